// Shared helpers of the checkpoint tests: a stored OFF VM with real disk
// layers in its own CAIRN_HOME and a byte-level model of its checkpoints.
#pragma once
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
inline long first_diff(const Bytes& a, const Bytes& b) {
  if (a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0) return -1;
  size_t n = std::min(a.size(), b.size()), i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return long(i);
}

inline void fill_random(std::mt19937_64& rng, uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    std::memcpy(p + i, &v, std::min<size_t>(8, n - i));
  }
}

// first_diff between what the chain at `top` reads and `want`, read in
// pieces.
inline long chain_diff(const std::string& top, const Bytes& want) {
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

inline Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_file(const std::string& path, const Bytes& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  REQUIRE(out.good());
}

inline std::string canon(const std::string& p) { return fs::weakly_canonical(p).string(); }

// Every file under `dir` (recursively) with its bytes; lock files aside
// (their content is the pid of the last holder).
inline std::map<std::string, Bytes> snapshot_files(const std::string& dir) {
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
  // A checkpoint made outside create() (a saved VM's): its disks hold `disks`.
  void remember(const std::string& id, DiskSet disks) { model_[id] = std::move(disks); }
  const std::string& home() const { return home_.path(); }

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

}  // namespace
