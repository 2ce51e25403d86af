// Incremental memory images: only the chunks written since the parent are
// stored; a chain loads the guest's RAM whole, and a chain whose links do
// not match is refused.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>

#include "snapshot/memory/image_chain.hpp"
#include "snapshot/memory/image_fold.hpp"
#include "tests/unit/snapshot/snapshot_test_util.hpp"

using namespace cairn;
using namespace cairn::snap;
using namespace cairn::snap::test;

namespace {
constexpr uint32_t kChunk = 64 << 10;
constexpr uint64_t kSize = 4 << 20;  // 64 chunks

struct Image {
  std::vector<uint8_t> bytes;
  MemoryImageStats stats;
  MemoryImageReader reader() const {
    auto r = MemoryImageReader::open(file_with(bytes), "image");
    REQUIRE(r);
    return std::move(*r);
  }
};

Image full_image(FakeRam& ram) {
  auto fd = memfile();
  auto st = write_memory_image(fd.get(), ram.regions, {.chunk_size = kChunk});
  REQUIRE(st);
  return {slurp(fd.get()), *st};
}

// An image of `ram` on top of `parent` storing only `written` chunks.
Image incremental_image(FakeRam& ram, const Image& parent, std::vector<size_t> written) {
  Image img;
  img.bytes = incremental_image_bytes(ram.regions, kChunk, parent.stats.image_id, written, &img.stats);
  return img;
}

void scribble(FakeRam& ram, size_t chunk, std::mt19937_64& rng) {
  fill_random(ram.bufs[0].data() + chunk * kChunk + 4096, 8192, rng);
}

std::vector<uint8_t> load(const MemoryImageChain& chain) {
  std::vector<uint8_t> got(kSize, 0);
  std::vector<RamRegion> regions{{0, kSize, got.data(), -1}};
  REQUIRE(chain.load(regions, /*already_zero=*/true));
  return got;
}
}  // namespace

TEST_CASE("incremental images: a chain of three loads the newest RAM whole", "[snapshot][chain]") {
  std::mt19937_64 rng(21);
  FakeRam ram({{0, kSize}});
  fill_random(ram.bufs[0].data(), kSize / 2, rng);  // half noise, half zero
  Image a = full_image(ram);
  const auto ram_a = ram.bufs[0];

  for (size_t c : {1, 40, 41}) scribble(ram, c, rng);
  Image b = incremental_image(ram, a, {1, 40, 41});
  const auto ram_b = ram.bufs[0];
  CHECK(b.stats.parent_chunks == kSize / kChunk - 3);
  CHECK(b.bytes.size() < a.bytes.size() / 8);

  for (size_t c : {41, 63}) scribble(ram, c, rng);
  Image c = incremental_image(ram, b, {41, 63});
  const auto ram_c = ram.bufs[0];

  auto chain_c = MemoryImageChain::from([&] {
    std::vector<MemoryImageReader> v;
    v.push_back(c.reader());
    v.push_back(b.reader());
    v.push_back(a.reader());
    return v;
  }());
  REQUIRE(chain_c);
  CHECK(load(*chain_c) == ram_c);
  CHECK(chain_c->holder_depth(63) == 0);
  CHECK(chain_c->holder_depth(41) == 0);
  CHECK(chain_c->holder_depth(40) == 1);
  CHECK(chain_c->holder_depth(0) == 2);

  std::vector<MemoryImageReader> ba;
  ba.push_back(b.reader());
  ba.push_back(a.reader());
  auto chain_b = MemoryImageChain::from(std::move(ba));
  REQUIRE(chain_b);
  CHECK(load(*chain_b) == ram_b);
  CHECK(ram_b != ram_a);

  // An incremental image on its own cannot fill guest memory.
  std::vector<uint8_t> got(kSize, 0);
  std::vector<RamRegion> regions{{0, kSize, got.data(), -1}};
  auto alone = b.reader().load(regions, true);
  REQUIRE_FALSE(alone);
  CHECK(alone.error().message.find("only the chunks written since its parent") != std::string::npos);
}

TEST_CASE("incremental images: a chain whose links do not match is refused", "[snapshot][chain]") {
  std::mt19937_64 rng(22);
  FakeRam ram({{0, kSize}});
  fill_random(ram.bufs[0].data(), kSize, rng);
  Image a = full_image(ram);
  scribble(ram, 3, rng);
  Image other = full_image(ram);  // a full image, not b's parent
  Image b = incremental_image(ram, a, {3});

  auto chain_of = [](std::vector<const Image*> imgs) {
    std::vector<MemoryImageReader> v;
    for (auto* i : imgs) v.push_back(i->reader());
    return MemoryImageChain::from(std::move(v));
  };
  auto missing = chain_of({&b});
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == Errc::corrupt);
  CHECK(missing.error().message.find("is missing") != std::string::npos);
  auto wrong = chain_of({&b, &other});
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().message.find("taken on top of") != std::string::npos);
  auto upside_down = chain_of({&a, &b});
  REQUIRE_FALSE(upside_down);
  CHECK(upside_down.error().message.find("full image but has a parent") != std::string::npos);
  CHECK(chain_of({&b, &a}));
}

TEST_CASE("incremental images: an image names its parent by its id", "[snapshot][chain]") {
  std::mt19937_64 rng(23);
  FakeRam ram({{0, kSize}});
  fill_random(ram.bufs[0].data(), kSize, rng);
  Image a = full_image(ram);
  Image b = incremental_image(ram, a, {});
  CHECK(a.bytes[8] == 2);
  CHECK(b.bytes[8] == 2);
  CHECK(a.reader().parent_id() == 0);
  CHECK(b.reader().parent_id() == a.reader().image_id());
  CHECK(a.reader().image_id() == a.stats.image_id);
  // Refer-to-parent chunks only exist in an image with a parent.
  auto fd = memfile();
  auto w = MemoryImageWriter::create(fd.get(), ram.regions, {.chunk_size = kChunk});
  REQUIRE(w);
  std::vector<size_t> one{0};
  CHECK_FALSE(w->refer_to_parent(one));
}

TEST_CASE("incremental images: removing one in the middle folds its chunks into its child", "[snapshot][chain]") {
  std::mt19937_64 rng(24);
  FakeRam ram({{0, kSize}});
  fill_random(ram.bufs[0].data(), kSize / 2, rng);
  Image a = full_image(ram);
  for (size_t c : {2, 30}) scribble(ram, c, rng);
  Image b = incremental_image(ram, a, {2, 30});
  const auto ram_b = ram.bufs[0];
  for (size_t c : {30, 50}) scribble(ram, c, rng);
  Image c = incremental_image(ram, b, {30, 50});
  const auto ram_c = ram.bufs[0];

  // b removed: c now builds on a, holding b's chunk 2 itself.
  auto out = memfile();
  auto folded = fold_into_child(b.reader(), c.reader(), out.get());
  REQUIRE(folded);
  CHECK(folded->parent_chunks == kSize / kChunk - 3);
  Image c2{slurp(out.get()), *folded};
  std::vector<MemoryImageReader> v;
  v.push_back(c2.reader());
  v.push_back(a.reader());
  auto chain = MemoryImageChain::from(std::move(v));
  REQUIRE(chain);
  CHECK(load(*chain) == ram_c);
  CHECK(c2.reader().parent_id() == a.reader().image_id());

  // a removed (a full image): b becomes a full image.
  auto out2 = memfile();
  auto full = fold_into_child(a.reader(), b.reader(), out2.get());
  REQUIRE(full);
  CHECK(full->parent_chunks == 0);
  Image b2{slurp(out2.get()), *full};
  CHECK(b2.reader().parent_id() == 0);
  CHECK(b2.reader().image_id() == b.reader().image_id());  // folding keeps the child's id
  std::vector<MemoryImageReader> only;
  only.push_back(b2.reader());
  auto alone = MemoryImageChain::from(std::move(only));
  REQUIRE(alone);
  CHECK(load(*alone) == ram_b);

  // Not its parent: refused. A damaged chunk in the removed image: refused.
  auto out3 = memfile();
  CHECK_FALSE(fold_into_child(a.reader(), c.reader(), out3.get()));
  Image bad = b;
  const ChunkEntry e = bad.reader().index()[2];
  bad.bytes[e.offset + 5] ^= 1;
  auto out4 = memfile();
  auto damaged = fold_into_child(bad.reader(), c.reader(), out4.get());
  REQUIRE_FALSE(damaged);
  CHECK(damaged.error().code == Errc::corrupt);
}

TEST_CASE("incremental images: a checkpoint's chain is found among its sibling folders", "[snapshot][chain]") {
  namespace fs = std::filesystem;
  std::string tmpl = fs::temp_directory_path().string() + "/cairn-chain-XXXXXX";
  REQUIRE(::mkdtemp(tmpl.data()));
  const fs::path root = tmpl;
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  } cleanup{root};
  auto put = [&](const std::string& folder, const std::vector<uint8_t>& bytes) {
    fs::create_directories(root / folder);
    auto fd = UniqueFd(::open((root / folder / kCheckpointMemoryFile).c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644));
    REQUIRE(fd);
    REQUIRE(::write(fd.get(), bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  };
  std::mt19937_64 rng(33);
  FakeRam ram({{0, kSize}});
  fill_random(ram.bufs[0].data(), kSize / 4, rng);
  Image a = full_image(ram);
  scribble(ram, 3, rng);
  Image b = incremental_image(ram, a, {3});
  scribble(ram, 7, rng);
  Image c = incremental_image(ram, b, {7});
  const auto ram_c = ram.bufs[0];
  put("a", a.bytes);
  put("b", b.bytes);
  put("c", c.bytes);
  put("other", full_image(ram).bytes);  // an unrelated full image
  put("junk", std::vector<uint8_t>(100, 0x5A));
  fs::create_directories(root / "empty");

  auto chain = MemoryImageChain::open_checkpoint((root / "c").string());
  REQUIRE(chain);
  CHECK(chain->depth() == 3);
  CHECK(load(*chain) == ram_c);
  auto full = MemoryImageChain::open_checkpoint((root / "a").string());
  REQUIRE(full);
  CHECK(full->depth() == 1);

  fs::remove_all(root / "a");  // the chain's base gone
  auto broken = MemoryImageChain::open_checkpoint((root / "c").string());
  REQUIRE_FALSE(broken);
  CHECK(broken.error().code == Errc::corrupt);
  CHECK(broken.error().message.find("is not in") != std::string::npos);
}
