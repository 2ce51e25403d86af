// The checkpoint tree operations of an OFF VM on real layer files: after
// every create, apply, rename and remove, each remaining checkpoint still
// holds exactly the disk contents it was taken with, the VM's disks hold
// what was last written, and no layer file or checkpoint folder is left
// that nothing reaches. A byte-level model of every checkpoint is the
// reference.
#include "tests/unit/checkpoint/checkpoint_test_vm.hpp"

TEST_CASE("checkpoint tree ops: remove middle leaf current and root of a linear chain", "[checkpoint][treeops]") {
  TestVm vm(2);
  std::map<std::string, std::string> id;
  for (auto n : {"A", "B", "C", "D", "E"}) {
    vm.write_round();
    id[n] = vm.create(n);
  }
  vm.write_round();
  vm.check_static();
  // A, frozen in place, is the VM's own base layer: the others are cairn's.
  CHECK(fs::path(vm.tree().find(id["A"])->disks[0]).filename() == "base0.cdsk");
  CHECK(fs::path(vm.tree().find(id["B"])->disks[0]).parent_path() == vm.disks_dir());
  vm.verify(id["E"]);
  vm.write_round();

  SECTION("middle, leaf, current, root") {
    auto actions = vm.remove(id["C"]);  // middle: its layers merge into D's
    CHECK(actions.dump().find("merge disk layer") != std::string::npos);
    CHECK(vm.tree().find(id["D"])->parent_id == id["B"]);
    vm.check_static();
    vm.verify(id["D"]);
    vm.write_round();

    vm.remove(id["E"]);  // a leaf that Now is not under: its layers are deleted
    CHECK(vm.tree().current == id["D"]);
    vm.check_static();
    vm.verify(id["D"]);
    vm.write_round();

    vm.remove(id["D"]);  // Now's parent: its layers merge into the VM's
    CHECK(vm.tree().current == id["B"]);
    vm.check_static();
    vm.verify(id["B"]);
    vm.write_round();

    vm.remove(id["A"]);  // the root (the VM's own base stays where it is)
    CHECK(vm.tree().find(id["B"])->parent_id.empty());
    CHECK(fs::exists(vm.tree().find(id["B"])->disks[0]));
    vm.check_static();
    vm.verify(id["B"]);
    vm.write_round();

    vm.remove(id["B"]);  // the last one
    CHECK(vm.tree().checkpoints.empty());
    CHECK(vm.tree().current.empty());
    vm.check_static();
    vm.verify("");
    vm.write_round();
    vm.check_static();
    // Only the VM's running layers are left in the disks folder.
    size_t n = 0;
    for ([[maybe_unused]] auto& e : fs::directory_iterator(vm.disks_dir())) ++n;
    CHECK(n == 2);
  }
  SECTION("current first, then root, then middle") {
    vm.remove(id["E"]);  // Now's parent and a leaf
    CHECK(vm.tree().current == id["D"]);
    vm.check_static();
    vm.verify(id["C"]);
    vm.write_round();
    vm.remove(id["A"]);
    vm.check_static();
    vm.verify(id["D"]);
    vm.write_round();
    vm.remove(id["C"]);
    vm.check_static();
    vm.verify(id["B"]);
    vm.write_round();
    vm.check_static();
  }
}

TEST_CASE("checkpoint tree ops: remove middle leaf and root of two branches and the branch point",
          "[checkpoint][treeops]") {
  TestVm vm(2, 4 << 20, {}, 7);
  std::map<std::string, std::string> id;
  auto make = [&](const char* n) {
    vm.write_round();
    id[n] = vm.create(n);
  };
  // A - B - C - D - H     (first branch)
  //       \ E - F - G     (second branch)
  for (auto n : {"A", "B", "C", "D", "H"}) make(n);
  vm.write_round();
  vm.apply(id["B"]);
  for (auto n : {"E", "F", "G"}) make(n);
  vm.write_round();
  {
    auto t = vm.tree();
    CHECK(t.children(id["B"]).size() == 2);
    CHECK(t.current == id["G"]);
  }
  vm.check_static();
  vm.verify(id["G"]);
  vm.write_round();

  vm.remove(id["D"]);  // middle of the first branch
  CHECK(vm.tree().find(id["H"])->parent_id == id["C"]);
  vm.check_static();
  vm.verify(id["G"]);
  vm.write_round();

  vm.remove(id["F"]);  // middle of the second branch, Now below
  CHECK(vm.tree().find(id["G"])->parent_id == id["E"]);
  vm.check_static();
  vm.verify(id["H"]);
  vm.write_round();

  vm.remove(id["B"]);  // the branch point: its layers stay, shared by both branches
  CHECK(vm.tree().find(id["C"])->parent_id == id["A"]);
  CHECK(vm.tree().find(id["E"])->parent_id == id["A"]);
  vm.check_static();
  vm.verify(id["E"]);
  vm.write_round();

  vm.remove(id["H"]);  // leaf of the first branch
  vm.check_static();
  vm.verify(id["G"]);
  vm.write_round();

  vm.remove(id["G"]);  // leaf of the second branch, Now's parent
  CHECK(vm.tree().current == id["E"]);
  vm.check_static();
  vm.verify(id["C"]);
  vm.write_round();

  vm.remove(id["C"]);  // root of the first branch, Now's parent
  CHECK(vm.tree().current == id["A"]);
  vm.check_static();
  vm.verify(id["E"]);
  vm.write_round();

  vm.remove(id["E"]);  // root of the second branch, Now's parent
  vm.check_static();
  vm.verify(id["A"]);
  vm.write_round();

  vm.remove(id["A"]);
  CHECK(vm.tree().checkpoints.empty());
  vm.check_static();
}

TEST_CASE("checkpoint tree ops: branches over shared layers removed in another order", "[checkpoint][treeops]") {
  TestVm vm(1, 4 << 20, {}, 11);
  std::map<std::string, std::string> id;
  auto make = [&](const std::string& n) {
    vm.write_round();
    id[n] = vm.create(n);
  };
  // Three branches off B, one more off C.
  make("A");
  make("B");
  make("C");
  make("C1");
  vm.apply(id["B"]);
  make("D");
  make("D1");
  vm.apply(id["B"]);
  make("E");
  vm.apply(id["C"]);
  make("F");
  vm.write_round();
  vm.check_static();
  vm.verify(id["F"]);
  vm.write_round();
  for (auto n : {"B", "C", "A", "D", "F", "E", "C1", "D1"}) {
    INFO("removing " << n);
    vm.remove(id[n]);
    vm.check_static();
    auto t = vm.tree();
    vm.verify(t.checkpoints.empty() ? "" : t.checkpoints.back().id);
    vm.write_round();
    vm.check_static();
  }
}

TEST_CASE("checkpoint tree ops: remove a subtree with and without Now", "[checkpoint][treeops]") {
  TestVm vm(2, 4 << 20, {}, 3);
  std::map<std::string, std::string> id;
  auto make = [&](const char* n) {
    vm.write_round();
    id[n] = vm.create(n);
  };
  // A - B - C - D
  //       \ E - F   (Now under F)
  make("A");
  make("B");
  make("C");
  make("D");
  vm.apply(id["B"]);
  make("E");
  make("F");
  vm.write_round();
  vm.verify(id["F"]);
  vm.write_round();

  SECTION("the branch without Now first") {
    vm.remove(id["C"], true);
    CHECK_FALSE(vm.tree().find(id["D"]));
    CHECK(vm.tree().current == id["F"]);
    vm.check_static();
    vm.verify(id["F"]);
    vm.write_round();

    vm.remove(id["E"], true);  // holds Now: Now moves up to B, its data stays
    CHECK(vm.tree().current == id["B"]);
    vm.check_static();
    vm.verify(id["B"]);
    vm.write_round();
  }
  SECTION("the branch with Now first") {
    vm.remove(id["E"], true);
    CHECK(vm.tree().current == id["B"]);
    CHECK_FALSE(vm.tree().find(id["F"]));
    vm.check_static();
    vm.verify(id["D"]);
    vm.write_round();

    vm.remove(id["C"], true);  // holds Now again (under D)
    CHECK(vm.tree().current == id["B"]);
    vm.check_static();
    vm.verify(id["A"]);
    vm.write_round();
  }
  vm.check_static();
  vm.remove(id["A"], true);  // everything
  CHECK(vm.tree().checkpoints.empty());
  CHECK(vm.tree().current.empty());
  vm.check_static();
}

TEST_CASE("checkpoint tree ops: rename and resolve", "[checkpoint][treeops]") {
  TestVm vm(1, 4 << 20, {}, 5);
  std::map<std::string, std::string> id;
  for (auto n : {"A", "B", "C"}) {
    vm.write_round();
    id[n] = vm.create(n);
  }
  vm.write_round();
  auto rename = [&](const std::string& which, const std::string& to) {
    auto s = vm.session();
    json report;
    return rename_checkpoint(s, which, to, false, report);
  };
  must(rename("B", "before-upgrade"), "rename");
  {
    auto t = vm.tree();
    CHECK(t.find(id["B"])->name == "before-upgrade");
    CHECK(t.find(id["B"])->most_recent_task == "Rename checkpoint");
    CHECK(must(t.resolve("before-upgrade"), "resolve")->id == id["B"]);
    CHECK(must(t.resolve(id["B"].substr(0, 8)), "resolve by prefix")->id == id["B"]);
    CHECK(must(t.resolve(id["B"]), "resolve by id")->id == id["B"]);
    auto old = t.resolve("B");
    REQUIRE_FALSE(old);
    CHECK(old.error().code == Errc::not_found);
  }
  // Two checkpoints of one name: the name is ambiguous, the IDs are not.
  must(rename(id["C"], "before-upgrade"), "rename by id");
  {
    auto t = vm.tree();
    auto amb = t.resolve("before-upgrade");
    REQUIRE_FALSE(amb);
    CHECK(amb.error().code == Errc::invalid_argument);
    CHECK_THAT(amb.error().message, Catch::Contains(id["B"]) && Catch::Contains(id["C"]));
    auto s = vm.session();
    NullProgress p;
    json report;
    auto r = apply_checkpoint(s, "before-upgrade", {}, p, report);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::invalid_argument);
  }
  // Invalid names change nothing.
  auto before = vm.tree();
  for (const std::string& bad : {std::string(), std::string("   "), std::string("a\nb"), std::string(101, 'x')}) {
    auto r = rename(id["A"], bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::invalid_argument);
  }
  CHECK(tree::tree_to_json(vm.tree()) == tree::tree_to_json(before));
  auto missing = rename("no-such-checkpoint", "x");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == Errc::not_found);
  // A rename changes no data.
  vm.check_static();
  vm.verify(id["C"]);
  vm.write_round();
  vm.remove(id["B"]);
  CHECK(must(vm.tree().resolve("before-upgrade"), "resolve")->id == id["C"]);
  vm.check_static();
}

TEST_CASE("checkpoint tree ops: dry runs change nothing and predict the collection", "[checkpoint][treeops]") {
  TestVm vm(2, 4 << 20, {}, 9);
  std::map<std::string, std::string> id;
  auto make = [&](const char* n) {
    vm.write_round();
    id[n] = vm.create(n);
  };
  make("A");
  make("B");
  make("C");
  make("D");
  vm.apply(id["B"]);
  make("E");
  vm.write_round();
  const auto files = snapshot_files(vm.paths().dir);
  const auto tree_text = read_file(vm.paths().dir + "/checkpoints.json");
  NullProgress p;
  json would_remove_c;
  {
    auto s = vm.session();
    json r1, r2, r3, r4, r5;
    auto c = create_checkpoint(s, {.name = "X", .dry_run = true}, p, r1);
    REQUIRE(c);
    CHECK(r1.contains("would"));
    must(apply_checkpoint(s, id["C"], {.dry_run = true}, p, r2), "apply dry run");
    CHECK(r2.contains("would"));
    must(apply_checkpoint(s, id["C"], {.checkpoint_first = true, .dry_run = true}, p, r3), "apply dry run");
    must(rename_checkpoint(s, id["A"], "renamed", true, r4), "rename dry run");
    CHECK(r4.contains("would"));
    must(remove_checkpoint(s, id["A"], true, true, p, r5), "remove subtree dry run");
    CHECK(r5["would"].size() >= 6);  // five checkpoints and at least the running layers' merges
    must(remove_checkpoint(s, id["C"], false, true, p, would_remove_c), "remove dry run");
    // What the session holds is unchanged too.
    CHECK(s.tree.checkpoints.size() == 5);
    CHECK(s.tree.current == id["E"]);
  }
  CHECK(snapshot_files(vm.paths().dir) == files);
  CHECK(read_file(vm.paths().dir + "/checkpoints.json") == tree_text);
  vm.check_static();

  // The dry run of a remove lists what the real one then does.
  auto actions = vm.remove(id["C"]);
  REQUIRE(would_remove_c["would"].is_array());
  json predicted = json::array();
  for (auto& w : would_remove_c["would"])
    if (!w.get<std::string>().starts_with("remove checkpoint")) predicted.push_back(w);
  CHECK(would_remove_c["would"].size() == predicted.size() + 1);
  CHECK(actions == predicted);
  CHECK(actions.dump().find("merge disk layer") != std::string::npos);
  vm.check_static();
  vm.verify(id["E"]);
}

TEST_CASE("checkpoint tree ops: a raw disk is imported by the first checkpoint and never written",
          "[checkpoint][treeops]") {
  // A size that ends in a partial block.
  TestVm vm(2, (4 << 20) + 3 * 512, {0}, 13);
  const std::string raw = vm.record().machine.disks[0].path;
  const Bytes raw_bytes = read_file(raw);
  // Before the first checkpoint the VM's raw disk is not a layer; only slot 1 is written.
  CHECK_FALSE(disk::Layer::open(raw, false));
  const std::string a = vm.create("A");
  {
    auto t = vm.tree();
    auto* c = t.find(a);
    REQUIRE(c);
    CHECK(c->disks[0] != raw);
    CHECK(fs::path(c->disks[0]).parent_path() == vm.disks_dir());
    auto rec = vm.record();
    CHECK(rec.machine.disks[0].path != raw);
    CHECK(fs::path(rec.machine.disks[0].path).parent_path() == vm.disks_dir());
  }
  vm.check_static();
  std::map<std::string, std::string> id{{"A", a}};
  for (auto n : {"B", "C"}) {
    vm.write_round();
    id[n] = vm.create(n);
  }
  vm.write_round();
  vm.verify(id["C"]);
  vm.write_round();
  vm.remove(id["A"]);  // the imported layer merges into B's
  vm.check_static();
  vm.verify(id["B"]);
  vm.write_round();
  vm.remove(id["B"]);
  vm.check_static();
  vm.verify(id["C"]);
  CHECK(read_file(raw) == raw_bytes);
}

TEST_CASE("checkpoint tree ops: disabled checkpoints are refused", "[checkpoint][treeops]") {
  TestVm vm(1);
  vm.write_round();
  const std::string a = vm.create("A");
  vm.write_round();
  const std::string b = vm.create("B");
  vm.write_round();
  NullProgress p;

  SECTION("checkpoints disabled for the VM") {
    auto rec = vm.record();
    auto set = must(checkpoint_settings(rec), "settings");
    set.enabled = false;
    store_checkpoint_settings(rec, set);
    must(vm.store().save(rec), "saving the VM");
    const auto files = snapshot_files(vm.paths().dir);
    {
      auto s = vm.session();
      CHECK_FALSE(s.settings.enabled);
      json report;
      auto r = create_checkpoint(s, {.name = "C"}, p, report);
      REQUIRE_FALSE(r);
      CHECK(r.error().code == Errc::invalid_state);
      CHECK_THAT(r.error().message, Catch::Contains("disabled"));
      auto r2 = apply_checkpoint(s, a, {.checkpoint_first = true}, p, report);
      REQUIRE_FALSE(r2);
      CHECK(r2.error().code == Errc::invalid_state);
    }
    CHECK(snapshot_files(vm.paths().dir) == files);
    vm.check_static();
  }
  SECTION("one checkpoint disabled") {
    {
      auto s = vm.session();
      s.tree.find(a)->enabled = false;
      must(s.save_tree(), "saving the tree");
    }
    const auto files = snapshot_files(vm.paths().dir);
    {
      auto s = vm.session();
      json report;
      auto r = apply_checkpoint(s, a, {}, p, report);
      REQUIRE_FALSE(r);
      CHECK(r.error().code == Errc::invalid_state);
    }
    CHECK(snapshot_files(vm.paths().dir) == files);
    vm.check_static();
    vm.apply(b);  // the others still apply
    vm.remove(a);  // and a disabled one can be removed
    vm.check_static();
  }
}

TEST_CASE("checkpoint tree ops: one session at a time", "[checkpoint][treeops]") {
  TestVm vm(1);
  vm.write_round();
  vm.create("A");
  {
    auto held = vm.session();
    auto second = VmSession::open(vm.name(), 200);
    REQUIRE_FALSE(second);
    CHECK(second.error().code == Errc::busy);
    CHECK_THAT(second.error().message, Catch::Contains(fmt::format("pid {}", ::getpid())));
    // Another process is refused the same way.
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      auto r = VmSession::open(vm.name(), 200);
      ::_exit(!r && r.error().code == Errc::busy ? 0 : 1);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  auto again = VmSession::open(vm.name(), 200);
  CHECK(again.has_value());
}

namespace {
// A - B - C, Now under C, two 32 MiB disks; B's layer (the one removing B
// merges into C's) holds 16 MiB on slot 0 and 8 MiB on slot 1.
struct CrashSetup {
  std::unique_ptr<TestVm> vm;
  std::map<std::string, std::string> id;
};

CrashSetup crash_setup(uint64_t seed) {
  CrashSetup cs;
  cs.vm = std::make_unique<TestVm>(2, 32 << 20, std::set<size_t>{}, seed);
  auto& vm = *cs.vm;
  vm.write_round();
  cs.id["A"] = vm.create("A");
  vm.write_bulk(0, 16 << 20);
  vm.write_bulk(1, 8 << 20);
  vm.write_round();
  cs.id["B"] = vm.create("B");
  vm.write_round();
  cs.id["C"] = vm.create("C");
  vm.write_round();
  return cs;
}


auto remove_op(const std::string& which) {
  return [which](VmSession& s) {
    NullProgress p;
    json report;
    return remove_checkpoint(s, which, false, false, p, report).has_value();
  };
}

bool collect_op(VmSession& s) {
  NullProgress p;
  return collect_garbage(s, p).has_value();
}
}  // namespace

TEST_CASE("checkpoint tree ops: a remove killed at any point loses nothing", "[checkpoint][treeops][crash]") {
  for (const char* target : {"B", "C"}) {
    // One uninterrupted run gives the time a whole remove takes.
    std::chrono::microseconds full{};
    {
      auto cs = crash_setup(21);
      bool done = false;
      full = run_child(cs.vm->name(), remove_op(cs.id[target]), std::chrono::microseconds(-1), &done);
      REQUIRE(done);
      cs.vm->forget(cs.id[target]);
      cs.vm->verify(cs.id["A"]);
    }
    std::mt19937_64 rng(std::hash<std::string>{}(target));
    const int kRuns = 8;
    int killed = 0, removed = 0, unfinished = 0;
    for (int k = 0; k <= kRuns; ++k) {
      // Spread over [0, full], jittered.
      const long step = full.count() / kRuns;
      const long jitter = step > 0 ? long(rng() % uint64_t(step)) : 0L;
      std::chrono::microseconds delay(std::min<long>(full.count() * k / kRuns + jitter / 2, full.count()));
      INFO("removing " << target << ", killed after " << delay.count() << " us of " << full.count());
      auto cs = crash_setup(100 + uint64_t(k));
      auto& vm = *cs.vm;
      bool done = false;
      run_child(vm.name(), remove_op(cs.id[target]), delay, &done);
      if (!done) ++killed;
      // Whether or not the tree was written, every checkpoint reads as
      // before, even with a merge left half done.
      const bool gone = !vm.tree().find(cs.id[target]);
      if (gone) {
        vm.forget(cs.id[target]);
        ++removed;
      }
      vm.check_contents();
      // The collection that finishes the work is killed too, half as late.
      run_child(vm.name(), collect_op, std::chrono::microseconds(delay.count() / 2), &done);
      vm.check_contents();
      // The next command finishes the collection.
      {
        auto s = vm.session();
        NullProgress p;
        auto actions = must(collect_garbage(s, p), "collecting after the crash");
        if (!actions.empty()) ++unfinished;
        if (!gone) CHECK(actions.empty());  // nothing was started before the tree was written
        // A second collection finds nothing left to do.
        auto again = must(collect_garbage(s, p), "collecting again");
        CHECK(again.empty());
      }
      vm.check_static();
      // The remove can be run again (or for the first time) and the rest still applies.
      if (vm.model().contains(cs.id[target])) {
        vm.remove(cs.id[target]);
        vm.check_static();
      }
      if (k == kRuns / 2) vm.verify(cs.id["A"]);
    }
    WARN("remove of " << target << ": " << killed << " of " << kRuns + 1 << " runs killed, " << removed
                      << " after the tree was written, " << unfinished << " left work for the next command");
  }
}

// A layer another process has open for writing (a VMM, `cairn disk write`)
// cannot be opened for reading while it does; that must not make it look
// like a raw disk or like a layer without a parent.
TEST_CASE("checkpoint tree ops: a layer held by a writer is still known as a layer", "[checkpoint][treeops]") {
  TestVm vm(1, 4 << 20, {}, 17);
  vm.write_round();
  const std::string a = vm.create("A");
  vm.write_round();
  const std::string b = vm.create("B");
  vm.write_round();
  NullProgress p;

  SECTION("create") {
    // The writer's own open rewrites the running layer's header: compare
    // the file names, the tree and the configuration.
    auto names = [&] {
      std::set<std::string> out;
      for (auto& [name, _] : snapshot_files(vm.paths().dir)) out.insert(name);
      return out;
    };
    const auto files = names();
    const auto tree_text = read_file(vm.paths().dir + "/checkpoints.json");
    const auto config_text = read_file(vm.paths().config);
    {
      auto writer = must(disk::Chain::open(vm.record().machine.disks[0].path, {.writable = true}), "writer");
      auto s = vm.session();
      json report;
      auto r = create_checkpoint(s, {.name = "C"}, p, report);
      REQUIRE_FALSE(r);
      CHECK(r.error().code == Errc::busy);
    }
    // Nothing changed but maybe a new empty layer the next command collects.
    {
      auto s = vm.session();
      must(collect_garbage(s, p), "collecting");
    }
    CHECK(names() == files);
    CHECK(read_file(vm.paths().dir + "/checkpoints.json") == tree_text);
    CHECK(read_file(vm.paths().config) == config_text);
    vm.check_static();
    vm.create("C");
    vm.check_static();
  }
  SECTION("remove of Now's parent") {
    {
      auto writer = must(disk::Chain::open(vm.record().machine.disks[0].path, {.writable = true}), "writer");
      auto s = vm.session();
      json report;
      auto r = remove_checkpoint(s, b, false, false, p, report);  // the merge needs the writer gone
      REQUIRE_FALSE(r);
      CHECK(r.error().code == Errc::busy);
    }
    vm.forget(b);  // the tree was written: B is gone, its layer waits for the collection
    {
      auto s = vm.session();
      auto actions = must(collect_garbage(s, p), "collecting");
      REQUIRE(actions.size() == 1);
      CHECK(actions[0].kind == GcAction::Kind::merge_into_child);
    }
    vm.check_static();
    vm.verify(a);
  }
}
