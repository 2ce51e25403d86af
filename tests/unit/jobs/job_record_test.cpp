#include <catch2/catch.hpp>

#include "tests/unit/jobs/temp_home.hpp"
#include "vmm/jobs/job_record.hpp"
#include "vmm/jobs/progress.hpp"

using namespace cairn;
using nlohmann::json;

TEST_CASE("job record: JSON round trip of each state", "[jobs]") {
  JobRecord running = test::sample_job();
  JobRecord done = running;
  done.state = JobState::completed;
  done.percent = 100;
  done.ended = "2024-05-01T12:01:00.000Z";
  done.exit_code = 0;
  done.result = {{"merged_bytes", 1048576}, {"disks", {"vda", "vdb"}}};
  JobRecord failed = running;
  failed.state = JobState::failed;
  failed.ended = "2024-05-01T12:01:00Z";  // without milliseconds is accepted too
  failed.exit_code = 6;
  failed.error = "merging disk vda: no space left on device";
  failed.vm = "";

  for (const JobRecord& r : {running, done, failed}) {
    auto back = job_from_json(json::parse(job_to_json(r).dump(2)));
    REQUIRE(back);
    CHECK(back->id == r.id);
    CHECK(back->operation == r.operation);
    CHECK(back->vm == r.vm);
    CHECK(back->state == r.state);
    CHECK(back->percent == r.percent);
    CHECK(back->stage == r.stage);
    CHECK(back->started == r.started);
    CHECK(back->ended == r.ended);
    CHECK(back->pid == r.pid);
    CHECK(back->exit_code == r.exit_code);
    CHECK(back->error == r.error);
    CHECK(back->result == r.result);
  }
}

TEST_CASE("job record: null while running, version, state names", "[jobs]") {
  json j = job_to_json(test::sample_job());
  CHECK(j["ended"].is_null());
  CHECK(j["exit_code"].is_null());
  CHECK(j["version"] == 1);
  CHECK(j["state"] == "running");
  CHECK(j["result"] == json::object());
  CHECK(job_state_from_string("completed") == JobState::completed);
  CHECK_FALSE(job_state_from_string("Running"));
}

TEST_CASE("job record: damaged records are rejected naming the field", "[jobs]") {
  using Mutation = std::pair<std::string, std::function<void(json&)>>;
  std::vector<Mutation> cases = {
      {"\"version\"", [](json& j) { j.erase("version"); }},
      {"version 2", [](json& j) { j["version"] = 2; }},
      {"\"id\"", [](json& j) { j["id"] = "3F1C2A9E-1234-4ABC-8DEF-0123456789AB"; }},
      {"\"operation\"", [](json& j) { j["operation"] = ""; }},
      {"\"vm\"", [](json& j) { j["vm"] = nullptr; }},
      {"\"state\"", [](json& j) { j["state"] = "paused"; }},
      {"\"percent\"", [](json& j) { j["percent"] = 101; }},
      {"\"percent\"", [](json& j) { j["percent"] = -1; }},
      {"\"percent\"", [](json& j) { j["percent"] = 4294967346LL; }},  // 2^32 + 50 must not wrap to 50
      {"\"percent\"", [](json& j) { j["percent"] = 42.5; }},
      {"\"started\"", [](json& j) { j["started"] = "2024-05-01 12:00:03"; }},
      {"\"ended\"", [](json& j) { j["ended"] = "2024-05-01T12:00:03.000Z"; }},  // set while running
      {"\"ended\"", [](json& j) { j.erase("ended"); }},
      {"\"pid\"", [](json& j) { j["pid"] = 0; }},
      {"\"exit_code\"", [](json& j) { j["exit_code"] = 0; }},  // set while running
      {"\"exit_code\"", [](json& j) { j["state"] = "failed"; j["ended"] = "2024-05-01T12:00:04Z"; }},
      {"\"exit_code\"", [](json& j) {
         j["state"] = "completed"; j["ended"] = "2024-05-01T12:00:04Z"; j["exit_code"] = 3; }},
      {"\"exit_code\"", [](json& j) {
         j["state"] = "failed"; j["ended"] = "2024-05-01T12:00:04Z"; j["exit_code"] = 0; }},
      {"\"result\"", [](json& j) { j["result"] = json::array(); }},
      {"\"error\"", [](json& j) { j["error"] = 5; }},
  };
  for (auto& [needle, mutate] : cases) {
    json j = job_to_json(test::sample_job());
    mutate(j);
    INFO(j.dump());
    auto r = job_from_json(j);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::corrupt);
    CHECK_THAT(r.error().message, Catch::Contains(needle));
  }
  CHECK_FALSE(job_from_json(json::array()));
}

TEST_CASE("job record: unknown keys are ignored", "[jobs]") {
  json j = job_to_json(test::sample_job());
  j["written_by"] = "a newer cairn";
  CHECK(job_from_json(j));
}

TEST_CASE("job timestamps: now has the documented shape and sorts as text", "[jobs]") {
  std::string a = job_timestamp_now();
  CHECK(is_job_timestamp(a));
  CHECK(a.size() == 24);
  CHECK(job_timestamp_now() >= a);
  CHECK(is_job_timestamp("2024-05-01T12:00:03Z"));
  CHECK_FALSE(is_job_timestamp("2024-05-01T12:00:03"));
  CHECK_FALSE(is_job_timestamp("2024-05-01T12:00:03.04Z"));
  CHECK_FALSE(is_job_timestamp("2024-05-01T12:00:03+00:00"));
  CHECK_FALSE(is_job_timestamp(""));
}

TEST_CASE("progress: percent_of", "[jobs]") {
  CHECK(percent_of(0, 10) == 0);
  CHECK(percent_of(1, 3) == 33);
  CHECK(percent_of(999, 1000) == 99);  // 100 only when done
  CHECK(percent_of(10, 10) == 100);
  CHECK(percent_of(11, 10) == 100);
  CHECK(percent_of(0, 0) == 100);
  CHECK(percent_of(UINT64_MAX / 2, UINT64_MAX) == 49);
}
