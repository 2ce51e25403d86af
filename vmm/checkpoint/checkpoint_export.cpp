#include "vmm/checkpoint/checkpoint_export.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "snapshot/disk/chain.hpp"
#include "snapshot/disk/convert.hpp"
#include "snapshot/memory/file_io.hpp"
#include "snapshot/memory/image_fold.hpp"
#include "vmm/base/unique_fd.hpp"
#include "vmm/checkpoint/checkpoint_ops.hpp"
#include "vmm/vmstore/atomic_file.hpp"
#include "vmm/vmstore/uuid.hpp"
#include "vmm/vmstore/vm_name.hpp"

namespace cairn {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {
std::string disk_name(size_t i) { return fmt::format("vd{}.cdsk", static_cast<char>('a' + i)); }

// Copies a file with progress and fsync; `dst` must not exist.
Result<void> copy_file(const std::string& src, const std::string& dst, Progress& p) {
  UniqueFd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return fail_errno("opening {}", src);
  struct stat st {};
  if (::fstat(in.get(), &st) != 0) return fail_errno("stat {}", src);
  UniqueFd out(::open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!out) return fail_errno("creating {}", dst);
  std::vector<char> buf(1 << 20);
  uint64_t done = 0;
  for (;;) {
    ssize_t n = ::read(in.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("reading {}", src);
    if (n == 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = ::write(out.get(), buf.data() + off, size_t(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return fail_errno("writing {}", dst);
      off += w;
    }
    done += uint64_t(n);
    p.update(done, uint64_t(st.st_size));
  }
  if (::fsync(out.get()) != 0) return fail_errno("fsync {}", dst);
  return {};
}

Result<void> make_dir(const fs::path& d) {
  if (::mkdir(d.c_str(), 0700) != 0) return fail_errno("creating {}", d.string());
  return {};
}

struct RemoveOnExit {
  std::string path;
  ~RemoveOnExit() {
    if (path.empty()) return;
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// The name export_checkpoint gives its folder until it is complete
// (TARGET.tmp-XXXXXX, mkdtemp): such a folder may hold every file and the
// manifest of an export killed just before its rename, and must not import.
bool is_temporary_export(const std::string& dir) {
  fs::path p(dir);
  if (!p.has_filename()) p = p.parent_path();  // "DIR/"
  const std::string name = p.filename().string();
  const size_t at = name.rfind(".tmp-");
  return at != std::string::npos && at > 0 && name.size() == at + 5 + 6 &&
         std::all_of(name.begin() + long(at + 5), name.end(), [](unsigned char ch) { return std::isalnum(ch); });
}

Result<json> read_manifest(const std::string& dir) {
  if (is_temporary_export(dir))
    return fail(Errc::corrupt, "{} is the temporary folder of an unfinished export, not a cairn export", dir);
  auto text = read_small_file((fs::path(dir) / kExportManifest).string(), 1 << 20);
  if (!text) return std::unexpected(text.error());
  json j = json::parse(*text, nullptr, false);
  auto bad = [&](std::string_view why) {
    return fail(Errc::corrupt, "{}/{} is not a cairn export: {}", dir, kExportManifest, why);
  };
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  if (!j.contains("format") || j["format"] != kExportFormat) return bad("unknown format");
  if (!j.contains("vm") || !j["vm"].is_object() || !j["vm"].contains("machine") || !j["vm"].contains("name") ||
      !j["vm"]["name"].is_string())
    return bad("no VM");
  if (!j.contains("checkpoint") || !j["checkpoint"].is_object() || !j["checkpoint"].contains("has_memory") ||
      !j["checkpoint"]["has_memory"].is_boolean())
    return bad("no checkpoint");
  return j;
}

// A path inside the export folder, refusing ones that climb out of it.
Result<std::string> inside(const std::string& dir, const std::string& rel) {
  fs::path r(rel);
  if (r.is_absolute() || rel.find("..") != std::string::npos)
    return fail(Errc::corrupt, "{}: the path '{}' points outside the export", dir, rel);
  return (fs::path(dir) / r).string();
}
}  // namespace

Result<void> export_checkpoint(VmSession& s, const std::string& which, const std::string& dir_arg, bool dry_run,
                               Progress& p, json& report) {
  auto found = s.tree.resolve(which);
  if (!found) return std::unexpected(found.error());
  const tree::Checkpoint c = **found;
  fs::path dir = fs::absolute(dir_arg).lexically_normal();
  if (!dir.has_filename()) dir = dir.parent_path();
  std::error_code ec;
  if (fs::exists(dir, ec)) return fail(Errc::invalid_argument, "{} already exists", dir.string());
  if (dry_run) {
    report["would"] = fmt::format("export checkpoint '{}' ({}) of VM '{}' to {}: {} disk(s){}", c.name, c.id,
                                  s.record.name, dir.string(), c.disks.size(),
                                  c.has_memory ? ", memory and device state" : "");
    return {};
  }
  std::string tmp = dir.string() + ".tmp-XXXXXX";
  if (!::mkdtemp(tmp.data())) return fail_errno("creating a folder next to {}", dir.string());
  RemoveOnExit cleanup{tmp};
  const fs::path t(tmp);
  for (auto* sub : {"disks", "boot", "state"})
    if (auto r = make_dir(t / sub); !r) return r;

  MachineConfig m = s.record.machine;
  for (size_t i = 0; i < c.disks.size(); ++i) {
    p.stage(fmt::format("exporting disk {} of checkpoint '{}'", disk_name(i), c.name));
    const std::string out = (t / "disks" / disk_name(i)).string();
    // By its magic (as checkpoint_create does): a layer that does not open
    // is an error, never a raw disk (a read-only disk may be one).
    auto layered = disk::peek_header(c.disks[i]);
    if (!layered) return std::unexpected(std::move(layered.error()).context(fmt::format("disk {}", c.disks[i])));
    Result<void> r = *layered ? disk::flatten_chain(c.disks[i], out, [&](uint64_t d, uint64_t n) { p.update(d, n); })
                              : disk::convert_raw_to_cairn(c.disks[i], out, disk::kDefaultBlockShift,
                                                           [&](uint64_t d, uint64_t n) { p.update(d, n); });
    if (!r) return std::unexpected(std::move(r.error()).context(fmt::format("disk {}", c.disks[i])));
    m.disks[i].path = "disks/" + disk_name(i);
  }
  p.stage("exporting the kernel and initrd");
  if (auto r = copy_file(m.kernel, (t / "boot/kernel").string(), p); !r) return r;
  m.kernel = "boot/kernel";
  if (!m.initrd.empty()) {
    if (auto r = copy_file(m.initrd, (t / "boot/initrd").string(), p); !r) return r;
    m.initrd = "boot/initrd";
  }
  if (c.has_memory) {
    const std::string cdir = s.cp.checkpoint_dir(c.id);
    p.stage("exporting state.bin");
    if (auto r = copy_file(cdir + "/state.bin", (t / "state/state.bin").string(), p); !r) return r;
    p.stage("exporting memory.img");
    auto image = snap::MemoryImageReader::open(cdir + "/memory.img");
    if (!image || !image->parent_id()) {
      // A full image is copied as it is (a damaged one is refused when restored).
      if (auto r = copy_file(cdir + "/memory.img", (t / "state/memory.img").string(), p); !r) return r;
    } else {
      // An incremental image: the export holds the whole RAM, on its own.
      auto chain = snap::MemoryImageChain::open_checkpoint(cdir);
      if (!chain) return std::unexpected(chain.error());
      auto fd = snap::create_new((t / "state/memory.img").string());
      if (!fd) return std::unexpected(fd.error());
      if (auto r = snap::flatten_chain(*chain, fd->get(), [&](uint64_t d, uint64_t n) { p.update(d, n); }); !r)
        return std::unexpected(r.error());
      if (auto r = snap::fsync_fd(fd->get(), "the exported memory image"); !r) return r;
    }
  }
  if (m.vsock) m.vsock->uds_path = "vsock.sock";
  json cp = tree::to_published_json(c);
  cp["has_memory"] = c.has_memory;
  json manifest{{"format", kExportFormat},
                {"vm", {{"name", s.record.name}, {"id", s.record.id}, {"machine", machine_config_to_json(m)}}},
                {"checkpoint", cp}};
  if (auto r = write_file_atomic((t / kExportManifest).string(), manifest.dump(2) + "\n", 0600); !r) return r;
  for (auto* sub : {"disks", "boot", "state", ""})
    if (auto r = fsync_dir((t / sub).string()); !r) return r;
  if (::rename(tmp.c_str(), dir.c_str()) != 0) return fail_errno("renaming {} to {}", tmp, dir.string());
  cleanup.path.clear();
  if (auto r = fsync_dir(dir.parent_path().string()); !r) return r;
  if (auto* mc = s.tree.find(c.id)) {
    mc->most_recent_task = "Export checkpoint";
    (void)s.save_tree();
  }
  report = cp;
  report["path"] = dir.string();
  return {};
}

Result<void> import_vm(const std::string& dir_arg, const std::string& name_arg, bool dry_run, Progress& p,
                       json& report) {
  const std::string dir = fs::absolute(dir_arg).lexically_normal().string();
  auto manifest = read_manifest(dir);
  if (!manifest) return std::unexpected(manifest.error());
  const json& vmj = (*manifest)["vm"];
  const json& cpj = (*manifest)["checkpoint"];
  const std::string name = name_arg.empty() ? vmj["name"].get<std::string>() : name_arg;
  if (auto r = validate_vm_name(name); !r) return r;
  auto m = machine_config_from_json(vmj["machine"]);
  if (!m) return std::unexpected(std::move(m.error()).context(fmt::format("{}/{}", dir, kExportManifest)));
  const bool has_memory = cpj["has_memory"].get<bool>();
  std::vector<std::string> sources;
  for (auto& d : m->disks) {
    auto src = inside(dir, d.path);
    if (!src) return std::unexpected(src.error());
    if (auto chain = disk::open_chain(*src, false); !chain)
      return std::unexpected(std::move(chain.error()).context("the exported disk"));
    sources.push_back(*src);
  }
  auto kernel = inside(dir, m->kernel);
  if (!kernel) return std::unexpected(kernel.error());
  auto store = VmStore::open_default();
  if (!store) return std::unexpected(store.error());
  if (store->load(name)) return fail(Errc::invalid_state, "a VM named '{}' exists already (use --name)", name);
  if (dry_run) {
    report["would"] = fmt::format("import {} as a new VM '{}' at checkpoint '{}' ({})", dir, name,
                                  cpj.value("name", ""), has_memory ? "saved" : "off");
    return {};
  }
  auto vm_id = uuid_v4();
  auto cp_id = uuid_v4();
  if (!vm_id || !cp_id) return std::unexpected(vm_id ? cp_id.error() : vm_id.error());
  VmPaths paths = store->paths(name);
  // The VM is stored first (pointing at the export's disks) so that its
  // folder and tree lock exist; the copies go in under that lock, and a
  // failure removes the VM again.
  VmRecord rec{*vm_id, name, utc_timestamp_now(), *m, json::object()};
  rec.machine.kernel = paths.dir + "/boot/kernel";
  if (!m->initrd.empty()) rec.machine.initrd = paths.dir + "/boot/initrd";
  if (rec.machine.vsock) rec.machine.vsock->uds_path = paths.dir + "/vsock.sock";
  for (size_t i = 0; i < rec.machine.disks.size(); ++i) rec.machine.disks[i].path = sources[i];  // until applied
  if (auto r = store->create(rec); !r) return r;
  auto s = VmSession::open(name);
  if (!s) return std::unexpected(s.error());
  auto undo = [&](Error e) -> Result<void> {
    (void)store->remove(name);
    return std::unexpected(std::move(e).context(fmt::format("importing {}", dir)));
  };
  if (auto r = s->make_dirs(); !r) return undo(r.error());
  for (auto* sub : {"/boot"})
    if (::mkdir((paths.dir + sub).c_str(), 0700) != 0 && errno != EEXIST) return undo(fail_errno("mkdir").error());
  p.stage("importing the kernel and initrd");
  if (auto r = copy_file(*kernel, rec.machine.kernel, p); !r) return undo(r.error());
  if (!m->initrd.empty()) {
    auto initrd = inside(dir, m->initrd);
    if (!initrd) return undo(initrd.error());
    if (auto r = copy_file(*initrd, rec.machine.initrd, p); !r) return undo(r.error());
  }
  tree::Checkpoint c;
  c.id = *cp_id;
  c.name = cpj.value("name", "imported");
  c.description = cpj.value("description", "");
  c.type = tree::checkpoint_type_from(cpj.value("type", "standard")).value_or(tree::CheckpointType::standard);
  c.added_time = c.modified_time = utc_timestamp_now();
  c.vm_id = rec.id;
  c.vm_name = name;
  c.most_recent_task = "Import";
  c.has_memory = has_memory;
  c.vm_state = has_memory ? "running" : "off";
  c.note = fmt::format("imported from {} (checkpoint {} of VM '{}')", dir, cpj.value("checkpoint_id", ""),
                       vmj["name"].get<std::string>());
  for (size_t i = 0; i < sources.size(); ++i) {
    auto layer = s->cp.new_layer_path();
    if (!layer) return undo(layer.error());
    p.stage(fmt::format("importing disk {}", disk_name(i)));
    if (auto r = copy_file(sources[i], *layer, p); !r) return undo(r.error());
    c.disks.push_back(*layer);
  }
  if (has_memory) {
    const std::string cdir = s->cp.checkpoint_dir(c.id);
    if (auto r = make_dir(cdir); !r) return undo(r.error());
    for (auto* f : {"state.bin", "memory.img"}) {
      p.stage(fmt::format("importing {}", f));
      if (auto r = copy_file(dir + "/state/" + f, cdir + "/" + f, p); !r) return undo(r.error());
    }
    if (auto r = fsync_dir(cdir); !r) return undo(r.error());
  }
  (void)fsync_dir(s->cp.disks_dir);
  if (auto r = s->tree.add(c); !r) return undo(r.error());
  if (auto r = s->save_tree(); !r) return undo(r.error());
  json applied;
  ApplyOptions ao;
  if (auto r = apply_checkpoint(*s, c.id, ao, p, applied); !r) return undo(r.error());
  report = tree::to_published_json(c);
  report["vm_state"] = has_memory ? "saved" : "off";
  report["path"] = paths.dir;
  return {};
}

}  // namespace cairn
