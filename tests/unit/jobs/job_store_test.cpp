#include <sys/stat.h>

#include <fstream>

#include <catch2/catch.hpp>

#include "tests/unit/jobs/temp_home.hpp"
#include "vmm/jobs/job_store.hpp"
#include "vmm/vmstore/vm_lock.hpp"

using namespace cairn;

namespace {
const std::string kIdA = "aaaaaaaa-1111-4abc-8def-0123456789ab";
const std::string kIdA2 = "aaaaaaaa-2222-4abc-8def-0123456789ab";
const std::string kIdB = "bbbbbbbb-1111-4abc-8def-0123456789ab";

JobRecord ended(std::string id, std::string started) {
  JobRecord r = test::sample_job(std::move(id));
  r.state = JobState::completed;
  r.percent = 100;
  r.exit_code = 0;
  r.started = std::move(started);
  r.ended = "2024-05-02T00:00:00.000Z";
  return r;
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 0777;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}
}  // namespace

TEST_CASE("job store: the folder is under $CAIRN_HOME", "[jobs]") {
  test::TempHome home;
  auto store = JobStore::open_default();
  REQUIRE(store);
  CHECK(store->dir() == home.path() + "/jobs");
  CHECK(store->paths(kIdA).record == home.path() + "/jobs/" + kIdA + ".json");
  CHECK(store->paths(kIdA).lock == home.path() + "/jobs/" + kIdA + ".lock");
  CHECK(store->paths(kIdA).log == home.path() + "/jobs/" + kIdA + ".log");
}

TEST_CASE("job store: save and load, private modes, documented bytes", "[jobs]") {
  test::TempHome home;
  JobStore store(home.path());
  REQUIRE(store.list().value().jobs.empty());  // no folder yet is no job
  REQUIRE(store.ensure_dir());
  CHECK(mode_of(store.dir()) == 0700);
  JobRecord r = ended(kIdA, "2024-05-01T12:00:00.000Z");
  r.result = {{"answer", 42}};
  REQUIRE(store.save(r));
  CHECK(mode_of(store.paths(kIdA).record) == 0600);

  auto text = std::ifstream(store.paths(kIdA).record);
  std::string all((std::istreambuf_iterator<char>(text)), std::istreambuf_iterator<char>());
  CHECK(all.starts_with("{\n  \"ended\": \"2024-05-02T00:00:00.000Z\",\n  \"error\": \"\",\n"));
  CHECK(all.ends_with("\n  \"vm\": \"web\"\n}\n"));

  auto back = store.load(kIdA);
  REQUIRE(back);
  CHECK(back->state == JobState::completed);
  CHECK(back->result["answer"] == 42);
}

TEST_CASE("job store: save refuses an invalid record", "[jobs]") {
  test::TempHome home;
  JobStore store(home.path());
  REQUIRE(store.ensure_dir());
  JobRecord r = test::sample_job(kIdA);
  r.percent = 250;
  auto s = store.save(r);
  REQUIRE_FALSE(s);
  CHECK(s.error().code == Errc::invalid_argument);
  CHECK(store.load_stored(kIdA).error().code == Errc::not_found);
}

TEST_CASE("job store: unknown, damaged and misplaced records", "[jobs]") {
  test::TempHome home;
  JobStore store(home.path());
  REQUIRE(store.ensure_dir());

  auto none = store.load(kIdA);
  REQUIRE_FALSE(none);
  CHECK(none.error().code == Errc::not_found);
  CHECK_THAT(none.error().message, Catch::Contains(kIdA));
  CHECK(store.load("not-an-id").error().code == Errc::invalid_argument);

  write_text(store.paths(kIdA).record, "{\"id\": ");
  auto broken = store.load(kIdA);
  REQUIRE_FALSE(broken);
  CHECK(broken.error().code == Errc::corrupt);
  CHECK_THAT(broken.error().message, Catch::Contains(store.paths(kIdA).record));

  // A valid record of job B stored under A's name.
  write_text(store.paths(kIdA).record, job_to_json(ended(kIdB, "2024-05-01T12:00:00Z")).dump());
  auto moved = store.load(kIdA);
  REQUIRE_FALSE(moved);
  CHECK(moved.error().code == Errc::corrupt);
}

TEST_CASE("job store: running is believed only while the job's lock is held", "[jobs]") {
  test::TempHome home;
  JobStore store(home.path());
  REQUIRE(store.ensure_dir());
  REQUIRE(store.save(test::sample_job(kIdA)));

  {
    // An OFD lock taken through another open file conflicts even within one process.
    auto lock = VmLock::try_acquire(store.paths(kIdA).lock);
    REQUIRE(lock);
    auto live = store.load(kIdA);
    REQUIRE(live);
    CHECK(live->state == JobState::running);
    CHECK_FALSE(live->exit_code);
  }

  auto gone = store.load(kIdA);
  REQUIRE(gone);
  CHECK(gone->state == JobState::failed);
  CHECK(gone->error == kJobVanishedError);
  CHECK(gone->exit_code == 1);
  CHECK(gone->percent == 42);  // how far it got stays visible
  // Reading does not rewrite the record.
  CHECK(store.load_stored(kIdA)->state == JobState::running);
}

TEST_CASE("job store: ids resolve from a unique prefix of 8 or more characters", "[jobs]") {
  test::TempHome home;
  JobStore store(home.path());
  REQUIRE(store.ensure_dir());
  for (auto& id : {kIdA, kIdA2, kIdB}) REQUIRE(store.save(ended(id, "2024-05-01T12:00:00Z")));

  CHECK(store.resolve(kIdA).value() == kIdA);
  CHECK(store.resolve("bbbbbbbb").value() == kIdB);
  CHECK(store.resolve("BBBBBBBB-11").value() == kIdB);
  CHECK(store.resolve("aaaaaaaa-2").value() == kIdA2);

  auto ambiguous = store.resolve("aaaaaaaa");
  REQUIRE_FALSE(ambiguous);
  CHECK(ambiguous.error().code == Errc::invalid_argument);
  CHECK_THAT(ambiguous.error().message, Catch::Contains("ambiguous") && Catch::Contains(kIdA) &&
                                            Catch::Contains(kIdA2));

  auto short_prefix = store.resolve("bbbbbbb");
  REQUIRE_FALSE(short_prefix);
  CHECK(short_prefix.error().code == Errc::invalid_argument);
  CHECK_THAT(short_prefix.error().message, Catch::Contains("at least 8"));

  auto unknown = store.resolve("cccccccc");
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().code == Errc::not_found);
  CHECK_THAT(unknown.error().message, Catch::Contains("cccccccc"));
  CHECK(store.resolve("cccccccc-1111-4abc-8def-0123456789ab").error().code == Errc::not_found);
}

TEST_CASE("job store: list is newest first, skips stray files, reports damaged ones", "[jobs]") {
  test::TempHome home;
  JobStore store(home.path());
  REQUIRE(store.ensure_dir());
  REQUIRE(store.save(ended(kIdA, "2024-05-01T12:00:00.500Z")));
  REQUIRE(store.save(ended(kIdB, "2024-05-01T12:00:00.900Z")));
  REQUIRE(store.save(ended(kIdA2, "2024-04-30T23:59:59Z")));
  write_text(store.dir() + "/." + kIdB + ".json.tmp.99", "{");  // an interrupted atomic write
  write_text(store.dir() + "/notes.json", "{}");
  write_text(store.paths("dddddddd-1111-4abc-8def-0123456789ab").record, "garbage");

  auto all = store.list();
  REQUIRE(all);
  REQUIRE(all->jobs.size() == 3);
  CHECK(all->jobs[0].id == kIdB);
  CHECK(all->jobs[1].id == kIdA);
  CHECK(all->jobs[2].id == kIdA2);
  REQUIRE(all->problems.size() == 1);
  CHECK_THAT(all->problems[0].message, Catch::Contains("dddddddd"));
}
