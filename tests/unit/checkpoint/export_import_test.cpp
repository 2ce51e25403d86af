// Export-VMCheckpoint / Import-VM on real layer files: an exported folder
// holds exactly one checkpoint's disks (flattened), the VM's boot files and,
// for a standard checkpoint, its memory files; importing it makes a new,
// independent VM at that checkpoint. Bad or half-written folders are refused
// without leaving a VM behind, and the exported VM is never changed.
#include <sys/stat.h>

#include <functional>
#include <optional>

#include "tests/unit/checkpoint/checkpoint_test_vm.hpp"
#include "vmm/checkpoint/checkpoint_export.hpp"
#include "vmm/control/vm_host.hpp"

namespace {

Bytes random_bytes(uint64_t seed, size_t n) {
  std::mt19937_64 rng(seed);
  Bytes b(n);
  fill_random(rng, b.data(), b.size());
  return b;
}

struct BootFiles {
  Bytes kernel, initrd;
};

// Small dummy kernel and initrd files named by the VM's configuration.
BootFiles add_boot_files(TestVm& vm, uint64_t seed) {
  BootFiles b{random_bytes(seed, 70000), random_bytes(seed + 1, 12345)};
  auto rec = vm.record();
  rec.machine.kernel = vm.home() + "/images/vmlinux";
  rec.machine.initrd = vm.home() + "/images/initrd.img";
  write_file(rec.machine.kernel, b.kernel);
  write_file(rec.machine.initrd, b.initrd);
  must(vm.store().save(rec), "saving the VM");
  return b;
}

Result<json> export_cp(TestVm& vm, const std::string& which, const std::string& dir, bool dry_run = false) {
  auto s = vm.session();
  NullProgress p;
  json report;
  if (auto r = export_checkpoint(s, which, dir, dry_run, p, report); !r) return std::unexpected(r.error());
  return report;
}

Result<json> import_as(const std::string& dir, const std::string& name, bool dry_run = false) {
  NullProgress p;
  json report;
  if (auto r = import_vm(dir, name, dry_run, p, report); !r) return std::unexpected(r.error());
  return report;
}

std::vector<std::string> vm_names(TestVm& vm) { return must(vm.store().names(), "listing VMs"); }

// Names (not contents) of every file and folder under `dir`.
std::set<std::string> names_under(const std::string& dir) {
  std::set<std::string> out;
  if (!fs::exists(dir)) return out;
  for (auto& e : fs::recursive_directory_iterator(dir)) out.insert(e.path().string());
  return out;
}

// Folders next to `target` named like its temporary folder.
std::vector<std::string> temp_folders_of(const std::string& target) {
  std::vector<std::string> out;
  const std::string prefix = fs::path(target).filename().string() + ".tmp-";
  for (auto& e : fs::directory_iterator(fs::path(target).parent_path()))
    if (e.path().filename().string().starts_with(prefix)) out.push_back(e.path().string());
  return out;
}

// The source VM's files other than its tree, and its tree with every
// checkpoint's most recent task left out (an export records itself there).
struct SourceState {
  std::map<std::string, Bytes> files;
  json tree;
};
SourceState source_state(TestVm& vm) {
  SourceState st;
  st.files = snapshot_files(vm.paths().dir);
  st.files.erase(vm.paths().dir + "/checkpoints.json");
  st.tree = tree::tree_to_json(vm.tree());
  for (auto& c : st.tree["checkpoints"]) c.erase("most_recent_task");
  return st;
}
void check_source_unchanged(TestVm& vm, const SourceState& before) {
  auto now = source_state(vm);
  CHECK(now.files == before.files);
  CHECK(now.tree == before.tree);
}

bool is_base_layer(const std::string& path) {
  auto h = must(disk::peek_header(path), "reading the header of " + path);
  REQUIRE(h.has_value());
  return !h->has_parent;
}

// The exported folder of a checkpoint whose disks read `want`.
void check_export_folder(const std::string& dir, const DiskSet& want, const BootFiles& boot, bool memory) {
  INFO("export folder " << dir);
  REQUIRE(fs::is_directory(dir));
  auto manifest = json::parse(read_file(dir + "/" + kExportManifest));
  CHECK(manifest["format"] == kExportFormat);
  CHECK(manifest["checkpoint"]["has_memory"] == memory);
  const json& m = manifest["vm"]["machine"];
  CHECK(m["kernel"] == "boot/kernel");
  CHECK(m["initrd"] == "boot/initrd");
  REQUIRE(m["disks"].size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const std::string rel = fmt::format("disks/vd{}.cdsk", char('a' + i));
    CHECK(m["disks"][i]["path"] == rel);
    INFO("disk " << rel);
    CHECK(is_base_layer(dir + "/" + rel));
    CHECK(chain_diff(dir + "/" + rel, want[i]) == -1);
  }
  CHECK(read_file(dir + "/boot/kernel") == boot.kernel);
  CHECK(read_file(dir + "/boot/initrd") == boot.initrd);
  std::set<std::string> state;
  if (fs::exists(dir + "/state"))
    for (auto& e : fs::directory_iterator(dir + "/state")) state.insert(e.path().filename().string());
  if (memory)
    CHECK(state == std::set<std::string>{"memory.img", "state.bin"});
  else
    CHECK(state.empty());
}

// The VM imported as `name`: a new ID, one checkpoint `cp_name` that is
// current, its own copies of the disks reading `want`, off (or saved at
// the checkpoint with `memory`, whose files are `state_bin`/`memory_img`).
struct Imported {
  VmRecord rec;
  tree::Tree tree;
};
Imported check_imported(TestVm& src, const std::string& name, const std::string& cp_name, const DiskSet& want,
                        const BootFiles& boot, const Bytes* state_bin = nullptr, const Bytes* memory_img = nullptr) {
  INFO("imported VM " << name);
  const bool memory = state_bin != nullptr;
  Imported out;
  out.rec = must(src.store().load(name), "loading the imported VM");
  VmPaths paths = src.store().paths(name);
  out.tree = must(tree::load_tree(paths.dir + "/checkpoints.json"), "loading the imported tree");
  CHECK(out.rec.id != src.record().id);
  CHECK(out.rec.name == name);
  REQUIRE(out.tree.checkpoints.size() == 1);
  const tree::Checkpoint& c = out.tree.checkpoints[0];
  CHECK(c.name == cp_name);
  CHECK(c.parent_id.empty());
  CHECK(c.vm_id == out.rec.id);
  CHECK(c.vm_name == name);
  CHECK(c.has_memory == memory);
  CHECK(out.tree.current == c.id);
  CHECK_FALSE(src.tree().find(c.id));  // a new checkpoint ID too
  auto st = must(query_vm_state(paths), "state of the imported VM");
  CHECK(st.state == VmRunState::off);
  if (memory) {
    const std::string cdir = paths.dir + "/checkpoints/" + c.id;
    CHECK(saved_state_dir(out.rec) == cdir);
    CHECK(saved_checkpoint_id(out.rec) == c.id);
    CHECK(read_file(cdir + "/state.bin") == *state_bin);
    CHECK(read_file(cdir + "/memory.img") == *memory_img);
  } else {
    CHECK(saved_state_dir(out.rec).empty());
    CHECK_FALSE(fs::exists(paths.dir + "/checkpoints/" + c.id));
  }
  CHECK(out.rec.machine.kernel == paths.dir + "/boot/kernel");
  CHECK(out.rec.machine.initrd == paths.dir + "/boot/initrd");
  CHECK(read_file(out.rec.machine.kernel) == boot.kernel);
  CHECK(read_file(out.rec.machine.initrd) == boot.initrd);
  REQUIRE(c.disks.size() == want.size());
  REQUIRE(out.rec.machine.disks.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("disk " << i);
    // The checkpoint's layer is a base of the VM's own; the VM writes a child of it.
    CHECK(fs::path(c.disks[i]).parent_path() == paths.dir + "/disks");
    CHECK(is_base_layer(c.disks[i]));
    CHECK(chain_diff(c.disks[i], want[i]) == -1);
    const std::string& top = out.rec.machine.disks[i].path;
    CHECK(fs::path(top).parent_path() == paths.dir + "/disks");
    CHECK(canon(top) != canon(c.disks[i]));
    CHECK(chain_diff(top, want[i]) == -1);
  }
  // Nothing else in its disks folder.
  size_t n = 0;
  for ([[maybe_unused]] auto& e : fs::directory_iterator(paths.dir + "/disks")) ++n;
  CHECK(n == 2 * want.size());
  return out;
}

// Writes random bytes at `off` of the disk at `top`.
void scribble(const std::string& top, uint64_t off, uint64_t seed) {
  auto chain = must(disk::Chain::open(top, {.writable = true}), "opening " + top);
  auto data = random_bytes(seed, 3 * kBlock + 100);
  must(chain->write(off, data), "writing");
  must(chain->flush(), "flushing");
}

// Copies an export folder (to break it in a test).
std::string copy_of(const std::string& dir, const std::string& to) {
  fs::copy(dir, to, fs::copy_options::recursive);
  return to;
}

void edit_manifest(const std::string& dir, const std::function<void(json&)>& f) {
  const std::string path = dir + "/" + kExportManifest;
  auto j = json::parse(read_file(path));
  f(j);
  auto text = j.dump(2);
  write_file(path, Bytes(text.begin(), text.end()));
}

// An import of `dir` fails with `code` (when given) and leaves no VM.
void check_import_refused(TestVm& vm, const std::string& dir, std::optional<Errc> code, const std::string& name) {
  INFO("importing " << dir << " as " << name);
  const auto names = vm_names(vm);
  const auto files = names_under(vm.store().vms_dir());
  auto r = import_as(dir, name);
  REQUIRE_FALSE(r);
  if (code) CHECK(r.error().code == *code);
  CHECK(vm_names(vm) == names);
  CHECK(names_under(vm.store().vms_dir()) == files);
  CHECK_FALSE(fs::exists(vm.store().paths(name).dir));
}

// A - B - C, then a branch B - D with Now under D.
std::map<std::string, std::string> branched_tree(TestVm& vm) {
  std::map<std::string, std::string> id;
  id["A"] = vm.create("A");  // first: a raw disk is imported by the first checkpoint
  for (auto n : {"B", "C"}) {
    vm.write_round();
    id[n] = vm.create(n);
  }
  vm.write_round();
  vm.apply(id["B"]);
  vm.write_round();
  id["D"] = vm.create("D");
  vm.write_round();
  return id;
}

}  // namespace

TEST_CASE("checkpoint export: a middle checkpoint round-trips into independent new VMs", "[checkpoint][export]") {
  // Slot 0 starts as a raw file, with a size that ends in a partial block.
  TestVm vm(2, (4 << 20) + 3 * 512, {0}, 31);
  const BootFiles boot = add_boot_files(vm, 77);
  auto id = branched_tree(vm);
  REQUIRE(vm.tree().children(id["B"]).size() == 2);
  const DiskSet want = vm.model().at(id["B"]);
  const std::string exports = vm.home() + "/exports";
  fs::create_directories(exports);
  const std::string dir = exports + "/b-export";
  const auto before = source_state(vm);

  auto report = must(export_cp(vm, "B", dir), "exporting B");
  CHECK(report["checkpoint_id"] == id["B"]);
  CHECK(report["path"] == dir);
  check_export_folder(dir, want, boot, false);
  {
    auto manifest = json::parse(read_file(dir + "/" + kExportManifest));
    CHECK(manifest["vm"]["name"] == vm.name());
    CHECK(manifest["vm"]["id"] == vm.record().id);
    CHECK(manifest["checkpoint"]["checkpoint_id"] == id["B"]);
    CHECK(manifest["checkpoint"]["name"] == "B");
  }
  CHECK(temp_folders_of(dir).empty());
  // The source VM: nothing changed but the checkpoint's most recent task.
  check_source_unchanged(vm, before);
  CHECK(vm.tree().find(id["B"])->most_recent_task == "Export checkpoint");
  vm.check_static();

  // Import as a new VM.
  auto imported = must(import_as(dir, "copy1"), "importing as copy1");
  CHECK(imported["vm_state"] == "off");
  CHECK(imported["name"] == "B");
  auto c1 = check_imported(vm, "copy1", "B", want, boot);
  CHECK(imported["checkpoint_id"] == c1.tree.checkpoints[0].id);
  CHECK(vm_names(vm) == std::vector<std::string>{"copy1", "vm1"});
  check_source_unchanged(vm, before);
  check_export_folder(dir, want, boot, false);

  // The name of an existing VM (also the default: the exported VM's name).
  const auto vms_files = snapshot_files(vm.store().vms_dir());
  for (const std::string& taken : {std::string("vm1"), std::string("copy1"), std::string()}) {
    INFO("importing as '" << taken << "'");
    auto r = import_as(dir, taken);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::invalid_state);
  }
  {
    auto now = snapshot_files(vm.store().vms_dir());
    CHECK(now == vms_files);
  }
  CHECK(vm_names(vm) == std::vector<std::string>{"copy1", "vm1"});

  // A second import under another name: an independent copy.
  must(import_as(dir, "copy2"), "importing as copy2");
  auto c2 = check_imported(vm, "copy2", "B", want, boot);
  CHECK(c2.rec.id != c1.rec.id);
  scribble(c1.rec.machine.disks[0].path, 0, 1);
  scribble(c1.rec.machine.disks[1].path, 5 * kBlock + 17, 2);
  scribble(c2.rec.machine.disks[1].path, 0, 3);
  {
    INFO("after writing into both imported VMs");
    CHECK(chain_diff(c1.rec.machine.disks[0].path, want[0]) != -1);
    CHECK(chain_diff(c1.rec.machine.disks[1].path, want[1]) != -1);
    CHECK(chain_diff(c2.rec.machine.disks[0].path, want[0]) == -1);  // untouched in copy2
    CHECK(chain_diff(c2.rec.machine.disks[1].path, want[1]) != -1);
    for (size_t i = 0; i < want.size(); ++i) {
      CHECK(chain_diff(c1.tree.checkpoints[0].disks[i], want[i]) == -1);
      CHECK(chain_diff(c2.tree.checkpoints[0].disks[i], want[i]) == -1);
    }
  }
  check_export_folder(dir, want, boot, false);
  check_source_unchanged(vm, before);
  vm.verify(id["D"]);  // every source checkpoint still applies with its data

  // The imported VM is an ordinary VM for the checkpoint commands.
  {
    auto s = must(VmSession::open("copy1", 2000), "opening copy1");
    NullProgress p;
    json r1, r2;
    auto c = must(create_checkpoint(s, {.name = "after-import"}, p, r1), "checkpoint of copy1");
    CHECK(c.parent_id == c1.tree.checkpoints[0].id);
    must(apply_checkpoint(s, "B", {}, p, r2), "applying B in copy1");
    CHECK(chain_diff(s.record.machine.disks[0].path, want[0]) == -1);
    CHECK(chain_diff(s.record.machine.disks[1].path, want[1]) == -1);
  }
}

TEST_CASE("checkpoint export: a standard checkpoint carries its memory files", "[checkpoint][export]") {
  TestVm vm(1, 4 << 20, {}, 41);
  const BootFiles boot = add_boot_files(vm, 78);
  vm.write_round();
  const std::string a = vm.create("A");
  vm.write_round();
  // A saved VM (a standard checkpoint applied, or a VMM's save): its memory
  // files are linked into the checkpoint taken of it.
  const std::string saved = vm.home() + "/images/saved";
  fs::create_directories(saved);
  const Bytes state_bin = random_bytes(5, 3001), memory_img = random_bytes(6, 256 << 10);
  write_file(saved + "/state.bin", state_bin);
  write_file(saved + "/memory.img", memory_img);
  {
    auto rec = vm.record();
    rec.extra["saved_state"] = {{"checkpoint", a}, {"dir", saved}};
    must(vm.store().save(rec), "saving the VM");
  }
  std::string sid;
  {
    auto s = vm.session();
    NullProgress p;
    json report;
    auto c = must(create_checkpoint(s, {.name = "S"}, p, report), "checkpoint of the saved VM");
    CHECK(c.vm_state == "saved");
    REQUIRE(c.has_memory);
    sid = c.id;
    vm.remember(sid, vm.now());
  }
  const std::string cdir = vm.checkpoints_dir() + "/" + sid;
  REQUIRE(read_file(cdir + "/state.bin") == state_bin);
  REQUIRE(read_file(cdir + "/memory.img") == memory_img);
  {
    auto rec = vm.record();  // as a start would: the saved state is used up
    rec.extra.erase("saved_state");
    must(vm.store().save(rec), "saving the VM");
  }
  vm.write_round();
  vm.check_static();
  const auto before = source_state(vm);

  const std::string dir = vm.home() + "/s-export";
  must(export_cp(vm, sid.substr(0, 8), dir), "exporting S");
  check_export_folder(dir, vm.model().at(sid), boot, true);
  CHECK(read_file(dir + "/state/state.bin") == state_bin);
  CHECK(read_file(dir + "/state/memory.img") == memory_img);
  check_source_unchanged(vm, before);

  auto report = must(import_as(dir, "resumed"), "importing S");
  CHECK(report["vm_state"] == "saved");
  auto imp = check_imported(vm, "resumed", "S", vm.model().at(sid), boot, &state_bin, &memory_img);
  // Its own copies, not links to the export's or the source's files.
  struct stat st {};
  REQUIRE(::stat((vm.store().paths("resumed").dir + "/checkpoints/" + imp.tree.checkpoints[0].id + "/memory.img").c_str(),
                 &st) == 0);
  CHECK(st.st_nlink == 1);
  check_source_unchanged(vm, before);
  CHECK(read_file(cdir + "/memory.img") == memory_img);
  vm.check_static();

  // A disk-only checkpoint of the same VM exports without memory.
  const std::string dir_a = vm.home() + "/a-export";
  must(export_cp(vm, "A", dir_a), "exporting A");
  check_export_folder(dir_a, vm.model().at(a), boot, false);
  must(import_as(dir_a, "from-a"), "importing A");
  check_imported(vm, "from-a", "A", vm.model().at(a), boot);
}

TEST_CASE("checkpoint export: bad targets and bad export folders are refused", "[checkpoint][export]") {
  TestVm vm(2, 4 << 20, {}, 51);
  const BootFiles boot = add_boot_files(vm, 79);
  vm.write_round();
  const std::string a = vm.create("A");
  vm.write_round();
  const std::string b = vm.create("B");
  vm.write_round();
  const std::string exports = vm.home() + "/exports";
  fs::create_directories(exports);
  const std::string good = exports + "/good";
  must(export_cp(vm, "B", good), "exporting B");
  check_export_folder(good, vm.model().at(b), boot, false);

  SECTION("export to an existing path") {
    write_file(exports + "/a-file", Bytes{1, 2, 3});
    const auto before = source_state(vm);
    const auto tree_text = read_file(vm.paths().dir + "/checkpoints.json");
    const auto files = snapshot_files(exports);
    for (const std::string& target : {good, good + "/", exports + "/a-file", exports}) {
      INFO("exporting to " << target);
      auto r = export_cp(vm, "A", target);
      REQUIRE_FALSE(r);
      CHECK(r.error().code == Errc::invalid_argument);
    }
    CHECK(snapshot_files(exports) == files);
    check_source_unchanged(vm, before);
    CHECK(read_file(vm.paths().dir + "/checkpoints.json") == tree_text);
    // An unknown checkpoint: nothing either.
    auto r = export_cp(vm, "no-such-checkpoint", exports + "/new");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::not_found);
    CHECK(snapshot_files(exports) == files);
    // A folder whose parent does not exist.
    auto r2 = export_cp(vm, "A", exports + "/missing/new");
    REQUIRE_FALSE(r2);
    CHECK(snapshot_files(exports) == files);
  }
  SECTION("a damaged checkpoint layer is not exported as a raw disk") {
    const std::string layer = vm.tree().find(b)->disks[1];
    const Bytes intact = read_file(layer);
    auto h = must(disk::peek_header(layer), "header");
    REQUIRE(h.has_value());
    Bytes damaged = intact;
    damaged.at(h->bat_offset[h->bat_active] + 5) ^= 0x11;
    write_file(layer, damaged);
    const auto files = snapshot_files(exports);
    auto r = export_cp(vm, "B", exports + "/from-damaged");
    write_file(layer, intact);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::corrupt);
    CHECK(snapshot_files(exports) == files);
  }
  SECTION("a manifest that is not a cairn export") {
    struct Case {
      const char* what;
      std::function<void(const std::string&)> damage;
    };
    // A valid layer just outside the folder: only the path check refuses it.
    fs::copy_file(good + "/disks/vda.cdsk", exports + "/x");
    const std::string src_layer = vm.tree().find(b)->disks[0];
    auto set_disk = [](std::string p) {
      return [p](const std::string& d) { edit_manifest(d, [&](json& j) { j["vm"]["machine"]["disks"][1]["path"] = p; }); };
    };
    const std::vector<Case> cases{
        {"not JSON", [](const std::string& d) { write_file(d + "/" + kExportManifest, Bytes{'{', 'n', 'o'}); }},
        {"empty", [](const std::string& d) { write_file(d + "/" + kExportManifest, Bytes{}); }},
        {"a JSON array", [](const std::string& d) { write_file(d + "/" + kExportManifest, Bytes{'[', ']'}); }},
        {"format 2", [](const std::string& d) { edit_manifest(d, [](json& j) { j["format"] = 2; }); }},
        {"format \"1\"", [](const std::string& d) { edit_manifest(d, [](json& j) { j["format"] = "1"; }); }},
        {"no format", [](const std::string& d) { edit_manifest(d, [](json& j) { j.erase("format"); }); }},
        {"no VM", [](const std::string& d) { edit_manifest(d, [](json& j) { j.erase("vm"); }); }},
        {"no checkpoint", [](const std::string& d) { edit_manifest(d, [](json& j) { j.erase("checkpoint"); }); }},
        {"has_memory not a bool",
         [](const std::string& d) { edit_manifest(d, [](json& j) { j["checkpoint"]["has_memory"] = "no"; }); }},
        {"disk ../x", set_disk("../x")},
        {"disk disks/../../x", set_disk("disks/../../x")},
        {"disk /etc/passwd", set_disk("/etc/passwd")},
        {"disk: the source's layer by its absolute path", set_disk(src_layer)},
        {"kernel ../../images/vmlinux",
         [](const std::string& d) { edit_manifest(d, [](json& j) { j["vm"]["machine"]["kernel"] = "../../images/vmlinux"; }); }},
        {"kernel /etc/passwd",
         [](const std::string& d) { edit_manifest(d, [](json& j) { j["vm"]["machine"]["kernel"] = "/etc/passwd"; }); }},
    };
    int k = 0;
    for (auto& c : cases) {
      INFO(c.what);
      const std::string d = copy_of(good, exports + fmt::format("/bad{}", k++));
      c.damage(d);
      check_import_refused(vm, d, Errc::corrupt, "imported");
    }
    // The manifest's own file missing.
    const std::string d = copy_of(good, exports + "/no-manifest");
    fs::remove(d + "/" + kExportManifest);
    check_import_refused(vm, d, std::nullopt, "imported");
    check_import_refused(vm, exports + "/does-not-exist", std::nullopt, "imported");
  }
  SECTION("a damaged disk layer is refused before the VM is created") {
    const std::string layer = good + "/disks/vdb.cdsk";
    const uint64_t size = fs::file_size(layer);
    REQUIRE(size > 4 * kBlock);
    {
      INFO("truncated in its data");
      const std::string d = copy_of(good, exports + "/truncated");
      fs::resize_file(d + "/disks/vdb.cdsk", size - kBlock / 2);
      check_import_refused(vm, d, std::nullopt, "imported");
    }
    {
      INFO("truncated in its headers");
      const std::string d = copy_of(good, exports + "/truncated-head");
      fs::resize_file(d + "/disks/vda.cdsk", 3000);
      check_import_refused(vm, d, std::nullopt, "imported");
    }
    {
      INFO("headers and tables overwritten");
      const std::string d = copy_of(good, exports + "/garbage");
      auto bytes = read_file(d + "/disks/vdb.cdsk");
      auto junk = random_bytes(9, 64 << 10);
      std::copy(junk.begin(), junk.end(), bytes.begin());
      write_file(d + "/disks/vdb.cdsk", bytes);
      check_import_refused(vm, d, std::nullopt, "imported");
    }
    {
      INFO("the BAT's checksum does not match");
      const std::string d = copy_of(good, exports + "/bat");
      auto h = must(disk::peek_header(d + "/disks/vdb.cdsk"), "header");
      REQUIRE(h.has_value());
      auto bytes = read_file(d + "/disks/vdb.cdsk");
      bytes.at(h->bat_offset[h->bat_active] + 3) ^= 0x5a;
      write_file(d + "/disks/vdb.cdsk", bytes);
      check_import_refused(vm, d, Errc::corrupt, "imported");
    }
    {
      INFO("a disk file missing");
      const std::string d = copy_of(good, exports + "/no-disk");
      fs::remove(d + "/disks/vdb.cdsk");
      check_import_refused(vm, d, std::nullopt, "imported");
    }
    {
      INFO("a raw file in place of a layer");
      const std::string d = copy_of(good, exports + "/raw");
      fs::remove(d + "/disks/vda.cdsk");
      write_file(d + "/disks/vda.cdsk", random_bytes(10, 1 << 20));
      check_import_refused(vm, d, std::nullopt, "imported");
    }
  }
  SECTION("files missing after the checks: the VM is removed again") {
    {
      INFO("no kernel");
      const std::string d = copy_of(good, exports + "/no-kernel");
      fs::remove(d + "/boot/kernel");
      check_import_refused(vm, d, std::nullopt, "imported");
    }
    {
      INFO("no initrd");
      const std::string d = copy_of(good, exports + "/no-initrd");
      fs::remove(d + "/boot/initrd");
      check_import_refused(vm, d, std::nullopt, "imported");
    }
    {
      INFO("memory announced, no memory files");
      const std::string d = copy_of(good, exports + "/no-memory");
      edit_manifest(d, [](json& j) { j["checkpoint"]["has_memory"] = true; });
      check_import_refused(vm, d, std::nullopt, "imported");
    }
    // The good folder still imports.
    must(import_as(good, "imported"), "importing the good export");
    check_imported(vm, "imported", "B", vm.model().at(b), boot);
  }
  SECTION("an export's temporary folder does not import") {
    // An export killed after writing its manifest, before the rename.
    const std::string d = copy_of(good, exports + "/good.tmp-Ab3xYz");
    check_import_refused(vm, d, Errc::corrupt, "imported");
    check_import_refused(vm, d + "/", Errc::corrupt, "imported");
    check_import_refused(vm, d + "/.", Errc::corrupt, "imported");
    // Only that name: a folder merely containing ".tmp-" imports.
    must(import_as(copy_of(good, exports + "/good.tmp-old"), "imported"), "importing good.tmp-old");
    check_imported(vm, "imported", "B", vm.model().at(b), boot);
  }
  vm.check_static();
}

TEST_CASE("checkpoint export: dry runs change nothing", "[checkpoint][export]") {
  TestVm vm(2, 4 << 20, {1}, 61);
  const BootFiles boot = add_boot_files(vm, 80);
  auto id = branched_tree(vm);
  const std::string exports = vm.home() + "/exports";
  fs::create_directories(exports);
  const std::string dir = exports + "/c-export";
  const auto home_files = snapshot_files(vm.home());
  {
    auto r = must(export_cp(vm, "C", dir, true), "export dry run");
    REQUIRE(r.contains("would"));
    CHECK_THAT(r["would"].get<std::string>(), Catch::Contains(dir) && Catch::Contains("'C'"));
    // A dry run checks the target too.
    auto bad = export_cp(vm, "C", exports, true);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().code == Errc::invalid_argument);
  }
  CHECK(snapshot_files(vm.home()) == home_files);
  vm.check_static();

  must(export_cp(vm, "C", dir), "exporting C");
  const auto after_export = snapshot_files(vm.home());
  {
    auto r = must(import_as(dir, "dry", true), "import dry run");
    REQUIRE(r.contains("would"));
    CHECK_THAT(r["would"].get<std::string>(), Catch::Contains("'dry'") && Catch::Contains("off"));
    auto taken = import_as(dir, "", true);  // the exported VM's own name
    REQUIRE_FALSE(taken);
    CHECK(taken.error().code == Errc::invalid_state);
  }
  CHECK(snapshot_files(vm.home()) == after_export);
  CHECK(vm_names(vm) == std::vector<std::string>{"vm1"});
  must(import_as(dir, "dry"), "importing for real");
  check_imported(vm, "dry", "C", vm.model().at(id["C"]), boot);
}

namespace {
auto export_op(const std::string& which, const std::string& dir) {
  return [which, dir](VmSession& s) {
    NullProgress p;
    json report;
    return export_checkpoint(s, which, dir, false, p, report).has_value();
  };
}
}  // namespace

TEST_CASE("checkpoint export: an export killed at any point leaves no half-written folder",
          "[checkpoint][export][crash]") {
  // B reads 16 MiB of bulk data on slot 0 and 8 MiB on slot 1 over A's.
  TestVm vm(2, 32 << 20, {}, 71);
  const BootFiles boot = add_boot_files(vm, 81);
  vm.write_round();
  const std::string a = vm.create("A");
  vm.write_bulk(0, 16 << 20);
  vm.write_bulk(1, 8 << 20);
  vm.write_round();
  const std::string b = vm.create("B");
  vm.write_round();
  vm.create("C");
  vm.write_round();
  const DiskSet want = vm.model().at(b);
  const std::string exports = vm.home() + "/exports";
  fs::create_directories(exports);

  // One uninterrupted run gives the time a whole export takes.
  std::chrono::microseconds full{};
  {
    bool done = false;
    const std::string dir = exports + "/full";
    full = run_child(vm.name(), export_op(b, dir), std::chrono::microseconds(-1), &done);
    REQUIRE(done);
    check_export_folder(dir, want, boot, false);
    CHECK(temp_folders_of(dir).empty());
    fs::remove_all(dir);
  }
  std::mt19937_64 rng(99);
  const int kRuns = 8;
  int complete = 0, partial = 0, with_manifest = 0;
  for (int k = 0; k <= kRuns; ++k) {
    const long step = full.count() / kRuns;
    const long jitter = step > 0 ? long(rng() % uint64_t(step)) : 0L;
    // Up to a little past the whole run's time, so that some runs complete.
    std::chrono::microseconds delay(full.count() * k * 9 / (kRuns * 8) + jitter / 2);
    INFO("export killed after " << delay.count() << " us of " << full.count());
    const std::string dir = exports + fmt::format("/run{}", k);
    bool done = false;
    run_child(vm.name(), export_op(b, dir), delay, &done);
    // The target is absent or complete.
    if (fs::exists(dir)) {
      ++complete;
      check_export_folder(dir, want, boot, false);
      const std::string name = fmt::format("imported{}", k);
      must(import_as(dir, name), "importing " + dir);
      check_imported(vm, name, "B", want, boot);
      must(vm.store().remove(name), "removing " + name);
    }
    // A temporary folder left behind never imports.
    for (auto& t : temp_folders_of(dir)) {
      ++partial;
      INFO("temporary folder " << t);
      check_import_refused(vm, t, std::nullopt, fmt::format("partial{}", k));
      // The manifest is written last: under another name, a temporary folder
      // with a manifest is a complete export, one without does not import.
      const std::string moved = dir + "-moved";
      fs::rename(t, moved);
      if (fs::exists(moved + "/" + kExportManifest)) {
        ++with_manifest;
        check_export_folder(moved, want, boot, false);
        const std::string name = fmt::format("moved{}", k);
        must(import_as(moved, name), "importing " + moved);
        check_imported(vm, name, "B", want, boot);
        must(vm.store().remove(name), "removing " + name);
      } else {
        check_import_refused(vm, moved, std::nullopt, fmt::format("moved{}", k));
      }
      fs::remove_all(moved);
    }
    if (done) CHECK(temp_folders_of(dir).empty());
    // The source's checkpoints read as before, whether or not the tree was rewritten.
    vm.check_static();
    fs::remove_all(dir);
  }
  CHECK(vm_names(vm) == std::vector<std::string>{"vm1"});
  vm.verify(a);
  WARN("export: " << complete << " of " << kRuns + 1 << " runs left a complete folder, " << partial
                  << " a temporary one (" << with_manifest
                  << " with its manifest); a whole export took " << full.count() / 1000 << " ms");
}

TEST_CASE("checkpoint export: a read-only raw disk is exported as a layer", "[checkpoint][export]") {
  TestVm vm(2, (2 << 20) + 512, {1}, 91);
  const BootFiles boot = add_boot_files(vm, 82);
  {
    auto rec = vm.record();
    rec.machine.disks[1].read_only = true;
    must(vm.store().save(rec), "saving the VM");
  }
  vm.write_bulk(0, 1 << 20);
  const std::string a = vm.create("A");
  const std::string raw = vm.record().machine.disks[1].path;
  CHECK(vm.tree().find(a)->disks[1] == raw);  // a read-only disk is its own frozen layer
  const std::string dir = vm.home() + "/ro-export";
  must(export_cp(vm, "A", dir), "exporting A");
  check_export_folder(dir, vm.model().at(a), boot, false);
  auto manifest = json::parse(read_file(dir + "/" + kExportManifest));
  CHECK(manifest["vm"]["machine"]["disks"][1]["read_only"] == true);
  must(import_as(dir, "ro"), "importing A");
  auto rec = must(vm.store().load("ro"), "loading ro");
  auto t = must(tree::load_tree(vm.store().paths("ro").dir + "/checkpoints.json"), "tree of ro");
  REQUIRE(t.checkpoints.size() == 1);
  CHECK(rec.machine.disks[1].read_only);
  CHECK(rec.machine.disks[1].path == t.checkpoints[0].disks[1]);  // read-only: no layer over it
  for (size_t i = 0; i < 2; ++i) CHECK(chain_diff(rec.machine.disks[i].path, vm.model().at(a)[i]) == -1);
  CHECK(read_file(raw) == vm.now()[1]);
}
