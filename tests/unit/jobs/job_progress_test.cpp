#include <thread>

#include <catch2/catch.hpp>

#include "tests/unit/jobs/temp_home.hpp"
#include "vmm/jobs/job_progress.hpp"

using namespace cairn;

namespace {
struct Fixture {
  test::TempHome home;
  JobStore store{home.path()};
  JobRecord rec = test::sample_job();
  Fixture() {
    rec.stage.clear();
    rec.percent = 0;
    REQUIRE(store.ensure_dir());
    REQUIRE(store.save(rec));
  }
  JobRecord stored() { return store.load_stored(rec.id).value(); }
};
}  // namespace

TEST_CASE("job progress: a stage is written at once and resets the percent", "[jobs]") {
  Fixture f;
  JobProgress p(f.store, f.rec);
  p.stage("copying");
  p.update(50, 100);  // right after: too soon for another write
  CHECK(f.stored().stage == "copying");
  CHECK(f.stored().percent == 0);
  CHECK(p.record().percent == 50);

  p.stage("merging disk vda");
  JobRecord now = f.stored();
  CHECK(now.stage == "merging disk vda");
  CHECK(now.percent == 0);
  CHECK(now.state == JobState::running);
}

TEST_CASE("job progress: updates are rate limited but not lost", "[jobs]") {
  Fixture f;
  JobProgress p(f.store, f.rec);
  p.stage("counting");
  size_t after_stage = p.writes();
  for (uint64_t i = 1; i <= 10000; ++i) p.update(i, 20000);
  CHECK(p.writes() - after_stage <= 1);  // 10000 calls within well under a second
  std::this_thread::sleep_for(JobProgress::kMinWriteInterval + std::chrono::milliseconds(20));
  p.update(10001, 20000);
  CHECK(f.stored().percent == 50);
  // An unchanged percent never costs a write.
  size_t before = p.writes();
  std::this_thread::sleep_for(JobProgress::kMinWriteInterval + std::chrono::milliseconds(20));
  p.update(10002, 20000);
  CHECK(p.writes() == before);
  CHECK(!p.write_error());
}

TEST_CASE("job progress: finish records the end whatever the rate limit", "[jobs]") {
  Fixture f;
  SECTION("completed") {
    JobProgress p(f.store, f.rec);
    p.stage("working");
    p.update(3, 10);
    REQUIRE(p.finish(0, "ignored", {{"checkpoints", 2}}));
    JobRecord r = f.stored();
    CHECK(r.state == JobState::completed);
    CHECK(r.percent == 100);
    CHECK(r.exit_code == 0);
    CHECK(r.error.empty());
    CHECK(is_job_timestamp(r.ended));
    CHECK(r.result["checkpoints"] == 2);
  }
  SECTION("failed") {
    JobProgress p(f.store, f.rec);
    p.stage("working");
    std::this_thread::sleep_for(JobProgress::kMinWriteInterval + std::chrono::milliseconds(20));
    p.update(3, 10);
    REQUIRE(p.finish(6, "no space left", nlohmann::json::object()));
    JobRecord r = f.stored();
    CHECK(r.state == JobState::failed);
    CHECK(r.percent == 30);
    CHECK(r.exit_code == 6);
    CHECK(r.error == "no space left");
  }
  SECTION("a result that is not an object is wrapped") {
    JobProgress p(f.store, f.rec);
    REQUIRE(p.finish(0, "", nlohmann::json(7)));
    CHECK(f.stored().result == nlohmann::json{{"value", 7}});
  }
}

TEST_CASE("job progress: a failing write is kept, not thrown", "[jobs]") {
  Fixture f;
  JobRecord other = f.rec;
  other.id = "eeeeeeee-1111-4abc-8def-0123456789ab";
  JobProgress p(JobStore(f.home.path() + "/missing"), other);  // its folder does not exist
  p.stage("x");
  REQUIRE(p.write_error());
  CHECK(p.write_error()->code == Errc::not_found);
}
