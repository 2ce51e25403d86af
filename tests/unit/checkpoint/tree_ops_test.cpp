// The checkpoint tree operations of an OFF VM on real layer files: after
// every create, apply, rename and remove, each remaining checkpoint still
// holds exactly the disk contents it was taken with, the VM's disks hold
// what was last written, and no layer file or checkpoint folder is left
// that nothing reaches. A byte-level model of every checkpoint is the
// reference.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <catch2/catch.hpp>

#include "snapshot/disk/chain.hpp"
#include "snapshot/disk/layer.hpp"
#include "tests/unit/vmm/temp_dir.hpp"
#include "vmm/checkpoint/checkpoint_ops.hpp"
#include "vmm/checkpoint/layer_gc.hpp"
#include "vmm/vmstore/uuid.hpp"

using namespace cairn;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

using Bytes = std::vector<uint8_t>;
using DiskSet = std::vector<Bytes>;  // the contents of every disk slot

constexpr uint64_t kBlock = uint64_t{1} << disk::kDefaultBlockShift;

template <class T>
T must(Result<T> r, const std::string& what) {
  if (!r) FAIL(what << ": " << r.error().message);
  return std::move(*r);
}
inline void must(Result<void> r, const std::string& what) {
  if (!r) FAIL(what << ": " << r.error().message);
}

// Index of the first differing byte, or -1: keeps Catch from printing
// megabyte vectors on a failure.
long first_diff(const Bytes& a, const Bytes& b) {
  if (a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0) return -1;
  size_t n = std::min(a.size(), b.size()), i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return long(i);
}

void fill_random(std::mt19937_64& rng, uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    std::memcpy(p + i, &v, std::min<size_t>(8, n - i));
  }
}

// first_diff between what the chain at `top` reads and `want`, read in
// pieces.
long chain_diff(const std::string& top, const Bytes& want) {
  auto c = must(disk::Chain::open(top), "opening " + top);
  if (c->size() != want.size()) return long(std::min<uint64_t>(c->size(), want.size()));
  Bytes buf(1 << 20);
  for (uint64_t off = 0; off < want.size(); off += buf.size()) {
    size_t n = std::min<uint64_t>(buf.size(), want.size() - off);
    must(c->read(off, std::span(buf.data(), n)), "reading " + top);
    if (std::memcmp(buf.data(), want.data() + off, n) != 0) {
      size_t i = 0;
      while (buf[i] == want[off + i]) ++i;
      return long(off + i);
    }
  }
  return -1;
}

Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const Bytes& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  REQUIRE(out.good());
}

std::string canon(const std::string& p) { return fs::weakly_canonical(p).string(); }

// Every file under `dir` (recursively) with its bytes; lock files aside
// (their content is the pid of the last holder).
std::map<std::string, Bytes> snapshot_files(const std::string& dir) {
  std::map<std::string, Bytes> out;
  for (auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_directory()) {
      out[e.path().string() + "/"] = {};
      continue;
    }
    auto name = e.path().filename().string();
    if (name == "checkpoints.lock" || name == "lock") continue;
    out[e.path().string()] = read_file(e.path().string());
  }
  return out;
}

// One stored VM in its own CAIRN_HOME, and the model of its disks.
class TestVm {
 public:
  // `raw_slots`: disk slots that are raw files instead of cairn base layers.
  explicit TestVm(size_t disks, uint64_t disk_size = 4 << 20, std::set<size_t> raw_slots = {}, uint64_t seed = 1)
      : size_(disk_size), rng_(seed) {
    REQUIRE_FALSE(home_.path().empty());
    REQUIRE(::setenv("CAIRN_HOME", home_.path().c_str(), 1) == 0);
    fs::create_directories(home_ / "images");
    VmRecord rec;
    rec.id = must(uuid_v4(), "uuid");
    rec.name = name_;
    rec.created = utc_timestamp_now();
    rec.machine.kernel = home_ / "images/vmlinux";
    for (size_t i = 0; i < disks; ++i) {
      Bytes initial(size_);
      std::string path;
      if (raw_slots.contains(i)) {
        path = home_ / fmt::format("images/raw{}.img", i);
        // Data in a few places, zeros (holes) elsewhere.
        for (uint64_t off = 0; off < size_; off += 5 * kBlock + 777)
          fill_random(rng_, initial.data() + off, std::min<uint64_t>(kBlock / 3, size_ - off));
        write_file(path, initial);
        raw_paths_.push_back(path);
      } else {
        path = home_ / fmt::format("images/base{}.cdsk", i);
        must(disk::create_base(path, size_), "creating base");
      }
      rec.machine.disks.push_back({path, false});
      now_.push_back(std::move(initial));
    }
    must(store_.create(rec), "creating the VM");
    for (auto& p : raw_paths_) raw_before_.push_back(read_file(p));
  }

  const std::string& name() const { return name_; }
  VmStore& store() { return store_; }
  VmRecord record() { return must(store_.load(name_), "loading the VM"); }
  VmPaths paths() const { return store_.paths(name_); }
  std::string disks_dir() const { return paths().dir + "/disks"; }
  std::string checkpoints_dir() const { return paths().dir + "/checkpoints"; }
  tree::Tree tree() { return must(tree::load_tree(paths().dir + "/checkpoints.json"), "loading the tree"); }
  std::string id_of(const std::string& cname) {
    auto t = tree();
    auto c = t.resolve(cname);
    if (!c) FAIL("resolving " << cname << ": " << c.error().message);
    return (*c)->id;
  }
  const std::map<std::string, DiskSet>& model() const { return model_; }
  const DiskSet& now() const { return now_; }

  VmSession session() { return must(VmSession::open(name_, 2000), "opening a session"); }

  // Writes into the VM's current top layers: whole blocks, partial blocks
  // across a block boundary, a few bytes, zeros, and an overwrite of a
  // block written before.
  void write_round() {
    auto rec = record();
    ++round_;
    for (size_t i = 0; i < rec.machine.disks.size(); ++i) {
      auto chain = must(disk::Chain::open(rec.machine.disks[i].path, {.writable = true}),
                        "opening " + rec.machine.disks[i].path);
      REQUIRE(chain->size() == size_);
      const uint64_t blocks = size_ / kBlock;
      auto put = [&](uint64_t off, uint64_t len) {
        len = std::min(len, size_ - off);
        Bytes data(len);
        fill_random(rng_, data.data(), data.size());
        must(chain->write(off, data), "writing");
        std::copy(data.begin(), data.end(), now_[i].begin() + long(off));
        written_.push_back(off);
      };
      put((rng_() % blocks) * kBlock, kBlock);                                 // one whole block
      put((rng_() % blocks) * kBlock + 1 + rng_() % (kBlock - 1), kBlock + 4096);  // across a boundary
      put(rng_() % (size_ - 600), 1 + rng_() % 600);                           // a few bytes
      put(size_ - 1 - rng_() % 1000, 1000);                                     // the last bytes
      put((rng_() % blocks) * kBlock + kBlock / 4, kBlock / 2);                 // inside one block
      if (written_.size() > 4) put(written_[rng_() % (written_.size() - 4)], kBlock / 2);  // overwrite older data
      if (round_ % 3 == 0) {
        uint64_t off = (rng_() % (blocks - 2)) * kBlock + kBlock / 2;
        must(chain->write_zeroes(off, 2 * kBlock), "writing zeros");
        std::fill_n(now_[i].begin() + long(off), 2 * kBlock, 0);
      }
      must(chain->flush(), "flushing");
    }
  }

  // Writes `bytes` of fresh data from offset 0 of slot `slot`.
  void write_bulk(size_t slot, uint64_t bytes) {
    auto rec = record();
    auto chain = must(disk::Chain::open(rec.machine.disks[slot].path, {.writable = true}), "opening");
    Bytes data(bytes);
    fill_random(rng_, data.data(), data.size());
    must(chain->write(0, data), "writing");
    must(chain->flush(), "flushing");
    std::copy(data.begin(), data.end(), now_[slot].begin());
  }

  std::string create(const std::string& cname) {
    auto s = session();
    NullProgress p;
    json report;
    auto c = must(create_checkpoint(s, {.name = cname}, p, report), "creating checkpoint " + cname);
    REQUIRE(c.vm_state == "off");
    REQUIRE(report["checkpoint_id"] == c.id);
    model_[c.id] = now_;
    return c.id;
  }

  void apply(const std::string& id) {
    auto s = session();
    NullProgress p;
    json report;
    must(apply_checkpoint(s, id, {}, p, report), "applying " + id);
    REQUIRE(report["vm_state"] == "off");
    REQUIRE(model_.contains(id));
    now_ = model_.at(id);
  }

  // Returns the actions the collection took.
  json remove(const std::string& id, bool subtree = false) {
    std::vector<std::string> gone{id};
    if (subtree) {
      auto t = tree();
      for (auto* d : t.descendants(id)) gone.push_back(d->id);
    }
    auto s = session();
    NullProgress p;
    json report;
    must(remove_checkpoint(s, id, subtree, false, p, report), "removing " + id);
    REQUIRE(report["removed"].size() == gone.size());
    for (auto& g : gone) model_.erase(g);
    return report["actions"];
  }

  void forget(const std::string& id) { model_.erase(id); }

  // Every check that does not change the VM.
  void check_static() {
    check_contents();
    check_files(tree(), record());
  }

  // The tree holds exactly the modelled checkpoints and every disk reads
  // its model (also in the middle of a merge).
  void check_contents() {
    auto t = tree();
    auto rec = record();
    std::set<std::string> ids, want;
    for (auto& c : t.checkpoints) ids.insert(c.id);
    for (auto& [id, _] : model_) want.insert(id);
    REQUIRE(ids == want);
    // Each checkpoint's frozen layers read exactly its model.
    for (auto& c : t.checkpoints) {
      REQUIRE(c.disks.size() == now_.size());
      for (size_t i = 0; i < c.disks.size(); ++i) {
        INFO("checkpoint " << c.name << " (" << c.id << ") disk " << i << " " << c.disks[i]);
        CHECK(chain_diff(c.disks[i], model_.at(c.id)[i]) == -1);
      }
    }
    // The VM's disks read what was last written.
    REQUIRE(rec.machine.disks.size() == now_.size());
    for (size_t i = 0; i < now_.size(); ++i) {
      INFO("current disk " << i << " " << rec.machine.disks[i].path);
      CHECK(chain_diff(rec.machine.disks[i].path, now_[i]) == -1);
    }
    for (size_t i = 0; i < raw_paths_.size(); ++i) {
      INFO("raw disk " << raw_paths_[i]);
      CHECK(first_diff(read_file(raw_paths_[i]), raw_before_[i]) == -1);
    }
  }

  // The layer files are exactly what the checkpoints and the VM's disks
  // reach through their parents, and a layer nobody names directly is kept
  // only as the shared parent of two or more branches.
  void check_files(const tree::Tree& t, const VmRecord& rec) {
    std::set<std::string> named;
    for (auto& c : t.checkpoints)
      for (auto& d : c.disks) named.insert(canon(d));
    for (auto& d : rec.machine.disks) named.insert(canon(d.path));
    // Every layer reachable from a named one, and how many children each has among them.
    std::set<std::string> reachable;
    std::map<std::string, int> children;
    std::vector<std::string> todo(named.begin(), named.end());
    while (!todo.empty()) {
      std::string p = todo.back();
      todo.pop_back();
      if (!reachable.insert(p).second) continue;
      auto l = disk::Layer::open(p, false);
      if (!l) FAIL("opening layer " << p << ": " << l.error().message);
      const auto& h = (*l)->header();
      CHECK(h.merge_kind == disk::MergeKind::none);
      if (!h.has_parent) continue;
      std::string parent = canon(disk::resolve_parent(p, h.parent.path));
      children[parent]++;
      todo.push_back(parent);
    }
    const std::string dd = canon(disks_dir());
    std::set<std::string> files, expected;
    if (fs::exists(dd))
      for (auto& e : fs::directory_iterator(dd)) files.insert(canon(e.path().string()));
    for (auto& p : reachable)
      if (fs::path(p).parent_path() == dd) expected.insert(p);
    CHECK(files == expected);
    for (auto& p : expected) {
      if (named.contains(p)) continue;
      INFO("unnamed layer " << p);
      CHECK(children[p] >= 2);
    }
    // Checkpoint folders: only for checkpoints that exist (none for disk-only ones).
    if (fs::exists(checkpoints_dir()))
      for (auto& e : fs::directory_iterator(checkpoints_dir())) {
        INFO("checkpoint folder " << e.path());
        CHECK(t.find(e.path().filename().string()) != nullptr);
      }
  }

  // check_static, then every checkpoint applied in turn (each checked),
  // and the VM left on `continue_at`.
  void verify(const std::string& continue_at) {
    check_static();
    auto t = tree();
    for (auto& c : t.checkpoints) {
      INFO("applying " << c.name);
      apply(c.id);
      auto rec = record();
      REQUIRE(tree().current == c.id);
      for (size_t i = 0; i < now_.size(); ++i) {
        INFO("disk " << i);
        CHECK(canon(rec.machine.disks[i].path) != canon(c.disks[i]));  // the VM writes a new layer
        CHECK(chain_diff(rec.machine.disks[i].path, model_.at(c.id)[i]) == -1);
      }
      check_files(tree(), rec);
    }
    if (!continue_at.empty()) apply(continue_at);
    check_static();
  }

 private:
  cairn::test::TempDir home_;
  std::string name_ = "vm1";
  VmStore store_{home_.path()};
  uint64_t size_;
  std::mt19937_64 rng_;
  int round_ = 0;
  std::vector<uint64_t> written_;
  DiskSet now_;
  std::map<std::string, DiskSet> model_;
  std::vector<std::string> raw_paths_;
  std::vector<Bytes> raw_before_;
};

}  // namespace

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

// Runs `op` on a session of the VM in a child process and kills the child
// after `delay` (never when negative). Returns how long the child ran;
// *completed says whether it ended by itself.
template <class Op>
std::chrono::microseconds run_child(const std::string& vm_name, Op op, std::chrono::microseconds delay,
                                    bool* completed) {
  auto t0 = std::chrono::steady_clock::now();
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    auto s = VmSession::open(vm_name, 5000);
    if (!s) ::_exit(2);
    ::_exit(op(*s) ? 0 : 1);
  }
  if (delay.count() >= 0) {
    std::this_thread::sleep_for(delay);
    ::kill(child, SIGKILL);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  auto ran = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
  *completed = WIFEXITED(status);
  if (WIFEXITED(status)) CHECK(WEXITSTATUS(status) == 0);
  return ran;
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
