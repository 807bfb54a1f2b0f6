// mnemo-bank-node end to end: the real binary on loopback, driven over
// HTTP, killed with SIGKILL in a loop, stopped with SIGTERM under load, and
// fed malformed HTTP.

#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <random>

#include "bank_workload.hpp"
#include "node_process.hpp"

using namespace testnode;
using json = nlohmann::json;

namespace {

std::unique_ptr<process> start_node(const std::string& dir,
                                    std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"--data", dir, "--listen", "127.0.0.1:0"};
  args.insert(args.end(), extra.begin(), extra.end());
  return std::make_unique<process>(MNEMO_BANK_NODE, args);
}

// Waits until the balances read model equals the aggregates for every
// account (the projection catches up asynchronously).
bool read_model_converges(client& c, const std::vector<std::string>& ids) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{20};
  while (std::chrono::steady_clock::now() < deadline) {
    bool same = true;
    for (auto& id : ids) {
      auto agg = body_of(c.call("GET", "/accounts/" + id));
      auto row = body_of(c.call("GET", "/balances/" + id));
      if (agg.value("balance", -1) != row.value("balance", -2)) {
        same = false;
        break;
      }
    }
    if (same) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
  return false;
}

// Final checks shared by the crash and the shutdown tests.
void check_final_state(client& c, ledger& book) {
  BOOST_REQUIRE(book.retry_unknown(c));
  BOOST_REQUIRE_EQUAL(book.unknown_count(), 0u);
  auto statuses = book.settle_transfers(c, std::chrono::seconds{30});
  size_t completed = 0;
  size_t compensated = 0;
  for (auto& op : book.transfers()) {
    auto& st = statuses[op.id];
    BOOST_CHECK_MESSAGE(st == "completed" || st == "compensated",
                        "transfer " << op.id << " ended " << st);
    if (op.to == "ghost")
      BOOST_CHECK_MESSAGE(st == "compensated",
                          "transfer " << op.id << " to ghost ended " << st);
    completed += st == "completed";
    compensated += st == "compensated";
  }
  auto expected = book.expected(statuses);
  int64_t sum = 0;
  for (auto& [id, balance] : expected) {
    auto got = body_of(c.call("GET", "/accounts/" + id));
    BOOST_CHECK_MESSAGE(
        got.value("balance", int64_t{-1}) == balance,
        "account " << id << ": " << got.dump() << " expected " << balance);
    sum += balance;
  }
  BOOST_CHECK(read_model_converges(c, book.accounts()));
  // The saga index agrees: nothing unfinished, nothing needing attention.
  auto listed = [&](const std::string& status) {
    return body_of(c.call("GET", "/transfers?status=" + status + "&limit=1000"))
        .value("transfers", json::array())
        .size();
  };
  size_t indexed_done = 0;
  for (int i = 0; i < 1000; ++i) {
    indexed_done = listed("completed");
    if (indexed_done >= std::min<size_t>(completed, 1000)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
  BOOST_CHECK_EQUAL(indexed_done, std::min<size_t>(completed, 1000));
  BOOST_CHECK_EQUAL(listed("running"), 0u);
  BOOST_CHECK_EQUAL(listed("compensating"), 0u);
  BOOST_CHECK_EQUAL(listed("needs_attention"), 0u);
  auto totals = body_of(c.call("GET", "/balances"));
  BOOST_CHECK_EQUAL(totals.value("total", int64_t{-1}), sum);
  BOOST_CHECK_EQUAL(totals.value("accounts", 0), book.accounts().size());
  BOOST_CHECK_EQUAL(book.failures(), 0u);
  BOOST_TEST_MESSAGE("acknowledged money commands: "
                     << book.acked_commands() << ", transfers completed "
                     << completed << ", compensated " << compensated);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(bank_node_http)

BOOST_AUTO_TEST_CASE(the_api_answers_as_documented) {
  auto dir = temp_dir("mnemo-bank-api");
  auto node = start_node(dir);
  client c{node->port()};
  auto open = c.call("POST", "/accounts", R"({"id":"a1","owner":"alice"})");
  BOOST_CHECK_EQUAL(status_of(open), 201u);
  BOOST_CHECK_EQUAL(body_of(open).value("owner", ""), "alice");
  BOOST_CHECK_EQUAL(
      status_of(c.call("POST", "/accounts", R"({"id":"a1","owner":"alice"})")),
      409u);
  BOOST_CHECK_EQUAL(
      status_of(c.call("POST", "/accounts", R"({"id":"a2","owner":"bob"})")),
      201u);
  auto dep = c.call("POST", "/accounts/a1/deposits",
                    R"({"amount":100,"command_id":"c-1"})");
  BOOST_CHECK_EQUAL(status_of(dep), 200u);
  BOOST_CHECK_EQUAL(body_of(dep).value("balance", 0), 100);
  // The same command id: the original answer, nothing applied again.
  BOOST_CHECK_EQUAL(body_of(c.call("POST", "/accounts/a1/deposits",
                                   R"({"amount":100,"command_id":"c-1"})"))
                        .value("balance", 0),
                    100);
  auto wd = c.call("POST", "/accounts/a1/withdrawals", R"({"amount":1000})");
  BOOST_CHECK_EQUAL(status_of(wd), 409u);
  BOOST_CHECK_EQUAL(body_of(wd).value("error", ""), "insufficient_funds");
  auto t1 = c.call("POST", "/transfers",
                   R"({"id":"t1","from":"a1","to":"a2","amount":30})");
  BOOST_CHECK_EQUAL(status_of(t1), 202u);
  // A repeated transfer id returns the existing transfer, starts nothing.
  BOOST_CHECK_EQUAL(
      status_of(c.call("POST", "/transfers",
                       R"({"id":"t1","from":"a1","to":"a2","amount":30})")),
      202u);
  BOOST_CHECK_EQUAL(
      status_of(c.call("POST", "/transfers",
                       R"({"id":"t2","from":"a1","to":"nobody","amount":5})")),
      202u);
  auto wait_done = [&](const std::string& id) {
    for (int i = 0; i < 500; ++i) {
      auto st = body_of(c.call("GET", "/transfers/" + id)).value("status", "");
      if (st != "running") return st;
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
    return std::string{"running"};
  };
  BOOST_CHECK_EQUAL(wait_done("t1"), "completed");
  BOOST_CHECK_EQUAL(wait_done("t2"), "compensated");
  BOOST_CHECK_EQUAL(status_of(c.call("GET", "/transfers/t9")), 404u);
  // Listings by status come from the saga index (a projection: poll).
  auto listed = [&](const std::string& status) {
    for (int i = 0; i < 500; ++i) {
      auto r = body_of(c.call("GET", "/transfers?status=" + status));
      if (r.contains("transfers") && !r["transfers"].empty()) return r;
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
    return json{};
  };
  auto compensated = listed("compensated");
  BOOST_REQUIRE(compensated.contains("transfers"));
  BOOST_CHECK_EQUAL(compensated["transfers"].size(), 1u);
  BOOST_CHECK_EQUAL(compensated["transfers"][0].value("id", ""), "t2");
  BOOST_CHECK_EQUAL(listed("completed")["transfers"][0].value("id", ""), "t1");
  BOOST_CHECK_EQUAL(
      body_of(c.call("GET", "/transfers?status=needs_attention"))["transfers"]
          .size(),
      0u);
  BOOST_CHECK_EQUAL(status_of(c.call("GET", "/transfers?status=lost")), 400u);
  auto a1 = body_of(c.call("GET", "/accounts/a1"));
  BOOST_CHECK_EQUAL(a1.value("balance", 0), 70);
  BOOST_CHECK_EQUAL(a1.value("open", false), true);
  // open, deposit, transfer withdraw, refund withdraw + refund deposit
  BOOST_CHECK_EQUAL(a1.value("version", 0), 5);
  BOOST_CHECK_EQUAL(status_of(c.call("GET", "/accounts/zz")), 404u);
  BOOST_CHECK_EQUAL(status_of(c.call("POST", "/accounts/a2/close")), 200u);
  auto closed = c.call("POST", "/accounts/a2/deposits", R"({"amount":1})");
  BOOST_CHECK_EQUAL(status_of(closed), 409u);
  BOOST_CHECK_EQUAL(body_of(closed).value("error", ""), "account_closed");
  BOOST_CHECK(read_model_converges(c, {"a1", "a2"}));
  auto totals = body_of(c.call("GET", "/balances"));
  BOOST_CHECK_EQUAL(totals.value("accounts", 0), 2);
  BOOST_CHECK_EQUAL(totals.value("total", 0), 100);
  BOOST_CHECK_EQUAL(status_of(c.call("GET", "/balances/zz")), 404u);
  BOOST_CHECK_EQUAL(status_of(c.call("GET", "/health")), 200u);
  // Client errors: JSON bodies with a code.
  auto bad = c.call("POST", "/accounts/a1/deposits", R"({"amount":0})");
  BOOST_CHECK_EQUAL(status_of(bad), 400u);
  BOOST_CHECK_EQUAL(body_of(bad).value("error", ""), "invalid_amount");
  BOOST_CHECK_EQUAL(status_of(c.call("POST", "/accounts", "{")), 400u);
  BOOST_CHECK_EQUAL(status_of(c.call("GET", "/nowhere")), 404u);
  BOOST_CHECK_EQUAL(status_of(c.call("PUT", "/accounts/a1")), 405u);
  // Alone, the node keeps no shard logs.
  auto shard = c.call("GET", "/admin/shards/0");
  BOOST_CHECK_EQUAL(status_of(shard), 404u);
  BOOST_CHECK_EQUAL(body_of(shard).value("error", ""), "not_found");
  // Operations: projection status, pause/resume, rebuild, dead letters.
  auto projections = body_of(c.call("GET", "/admin/projections"));
  BOOST_REQUIRE(projections.contains("projections"));
  BOOST_CHECK_EQUAL(projections["projections"].size(), 2u);
  // Alone, there is no cluster-wide model.
  BOOST_CHECK_EQUAL(status_of(c.call("GET", "/cluster/balances")), 404u);
  auto pause = c.call("POST", "/admin/projections/bank.balances/pause");
  BOOST_CHECK_EQUAL(status_of(pause), 200u);
  BOOST_CHECK_EQUAL(body_of(pause).value("paused", false), true);
  BOOST_REQUIRE_EQUAL(
      status_of(c.call("POST", "/accounts/a1/deposits", R"({"amount":5})")),
      200u);
  std::this_thread::sleep_for(std::chrono::milliseconds{200});
  // Paused: the read model still shows the old balance, the lag grows.
  BOOST_CHECK_EQUAL(body_of(c.call("GET", "/balances/a1")).value("balance", 0),
                    70);
  auto paused = body_of(c.call("GET", "/admin/projections"));
  for (auto& p : paused["projections"])
    if (p.value("name", "") == "bank.balances")
      BOOST_CHECK_GT(p.value("lag", 0), 0);
  BOOST_CHECK_EQUAL(
      status_of(c.call("POST", "/admin/projections/bank.balances/resume")),
      200u);
  BOOST_CHECK(read_model_converges(c, {"a1", "a2"}));
  BOOST_CHECK_EQUAL(body_of(c.call("GET", "/balances/a1")).value("balance", 0),
                    75);
  BOOST_CHECK_EQUAL(
      status_of(c.call("POST", "/admin/projections/bank.balances/rebuild")),
      200u);
  BOOST_CHECK(read_model_converges(c, {"a1", "a2"}));
  BOOST_CHECK_EQUAL(body_of(c.call("GET", "/balances")).value("total", 0), 105);
  auto letters =
      body_of(c.call("GET", "/admin/projections/bank.balances/dead-letters"));
  BOOST_CHECK_EQUAL(letters.value("dead_letters", json::array()).size(), 0u);
  BOOST_CHECK_EQUAL(
      status_of(c.call("POST",
                       "/admin/projections/bank.balances/dead-letters/3/drop")),
      404u);
  BOOST_CHECK_EQUAL(
      status_of(c.call("POST", "/admin/projections/nothing/pause")), 404u);
  // Metrics: the families operators rely on.
  auto metrics = c.call("GET", "/metrics");
  BOOST_REQUIRE_EQUAL(status_of(metrics), 200u);
  for (auto family :
       {"mnemo_journal_commits_total", "mnemo_journal_commit_events_bucket",
        "mnemo_journal_commit_seconds_bucket", "mnemo_commands_total",
        "mnemo_recovery_seconds_bucket", "mnemo_projection_lag_events",
        "mnemo_projection_dead_letters", "mnemo_entities_active",
        "mnemo_passivations_total", "mnemo_http_request_seconds_bucket",
        "mnemo_sagas{type=\"transfer\",phase=\"completed\"} 1",
        "mnemo_sagas{type=\"transfer\",phase=\"compensated\"} 1"})
    BOOST_CHECK_MESSAGE(metrics->body.find(family) != std::string::npos,
                        "metrics lack " << family);
  node->signal(SIGTERM);
  auto status = node->wait(std::chrono::seconds{20});
  BOOST_REQUIRE(status);
  BOOST_CHECK(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  // Everything acknowledged is there after a restart.
  auto again = start_node(dir);
  client c2{again->port()};
  BOOST_CHECK_EQUAL(body_of(c2.call("GET", "/accounts/a1")).value("balance", 0),
                    75);
  BOOST_CHECK_EQUAL(
      body_of(c2.call("GET", "/transfers/t2")).value("status", ""),
      "compensated");
}

BOOST_AUTO_TEST_CASE(malformed_http_never_crashes_or_wedges_the_node) {
  auto dir = temp_dir("mnemo-bank-fuzz");
  auto node = start_node(dir, {"--body-limit=4096", "--idle-timeout-s=2"});
  client c{node->port()};
  auto starts_with = [](const std::string& s, const std::string& prefix) {
    return s.compare(0, prefix.size(), prefix) == 0;
  };
  BOOST_CHECK(starts_with(c.raw("GARBAGE\r\n\r\n"), "HTTP/1.1 400"));
  BOOST_CHECK(
      starts_with(c.raw("GET /health HTTP/9.9\r\n\r\n"), "HTTP/1.1 400"));
  BOOST_CHECK(starts_with(
      c.raw("POST /accounts HTTP/1.1\r\nContent-Length: 99999\r\n\r\n{}"),
      "HTTP/1.1 413"));
  BOOST_CHECK(starts_with(c.raw("GET /health HTTP/1.1\r\nX: " +
                                std::string(20000, 'x') + "\r\n\r\n"),
                          "HTTP/1.1 431"));
  BOOST_CHECK(starts_with(
      c.raw("POST /accounts HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            "zz\r\n"),
      "HTTP/1.1 400"));
  // Random bytes and mutated requests.
  std::mt19937_64 rng{7};
  const std::string valid =
      "POST /accounts/a1/deposits HTTP/1.1\r\nHost: x\r\nContent-Length: "
      "14\r\n\r\n{\"amount\":10}";
  for (int i = 0; i < 200; ++i) {
    std::string bytes = valid;
    if (i % 4 == 0) {
      bytes.assign(1 + rng() % 300, '\0');
      for (auto& ch : bytes) ch = static_cast<char>(rng() % 256);
    } else {
      for (int e = 0; e < 1 + static_cast<int>(rng() % 5); ++e)
        bytes[rng() % bytes.size()] = static_cast<char>(rng() % 256);
    }
    c.raw(bytes, std::chrono::milliseconds{100});
  }
  // A client that sends half a request and stalls is dropped after the
  // idle timeout, and others are served meanwhile.
  // The server closes it (the read ends before the client's own 8 s).
  client staller{node->port()};
  std::chrono::steady_clock::duration stalled{};
  std::thread stall{[&] {
    auto t0 = std::chrono::steady_clock::now();
    staller.raw("POST /accounts HTTP/1.1\r\nContent-Length: 50\r\n\r\n{",
                std::chrono::seconds{8});
    stalled = std::chrono::steady_clock::now() - t0;
  }};
  auto health = c.call("GET", "/health");
  BOOST_CHECK_EQUAL(status_of(health), 200u);
  stall.join();
  auto stalled_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(stalled).count();
  BOOST_CHECK_GE(stalled_ms, 1500);
  BOOST_CHECK_LT(stalled_ms, 6000);
  // (`c` idled past the timeout too: its connection is gone.)
  client fresh{node->port()};
  BOOST_CHECK_EQUAL(status_of(fresh.call("GET", "/health")), 200u);
  BOOST_CHECK(!node->wait(std::chrono::milliseconds{1}));  // still running
}

// Python's http.client (and any client that writes its whole request before
// it reads) must get the 413, not a broken pipe: the node drains the body it
// refuses before closing, up to a bound.
BOOST_AUTO_TEST_CASE(a_client_writing_its_whole_body_first_gets_its_413) {
  auto dir = temp_dir("mnemo-bank-413");
  auto node = start_node(dir);
  client c{node->port()};
  auto refused = [](const client::exchange& x) {
    return x.answer.compare(0, 12, "HTTP/1.1 413") == 0 &&
           x.answer.find("\"error\":\"payload_too_large\"") !=
               std::string::npos &&
           x.answer.find("Connection: close") != std::string::npos;
  };
  const size_t mib20 = size_t{20} << 20;
  for (int i = 0; i < 3; ++i) {
    auto x = c.send_whole(
        "POST /accounts HTTP/1.1\r\nHost: x\r\nContent-Type: "
        "application/json\r\nContent-Length: " +
            std::to_string(mib20) + "\r\n\r\n",
        mib20);
    BOOST_CHECK_MESSAGE(x.write_error.empty(), "write: " << x.write_error);
    BOOST_CHECK_EQUAL(x.body_written, mib20);
    BOOST_CHECK_MESSAGE(refused(x), x.answer.substr(0, 200));
  }
  // Chunked, without Content-Length: the limit is met while reading.
  std::string chunked =
      "POST /accounts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
      "chunked\r\n\r\n";
  for (int i = 0; i < 16; ++i)
    chunked += "10000\r\n" + std::string(0x10000, 'y') + "\r\n";
  chunked += "0\r\n\r\n";
  auto x = c.send_whole(chunked, 0);
  BOOST_CHECK_MESSAGE(x.write_error.empty(), "write: " << x.write_error);
  BOOST_CHECK_MESSAGE(refused(x), x.answer.substr(0, 200));
  // A client that never stops sending is cut off after the drain bound
  // (64 MiB), not read forever.
  auto endless = c.send_whole(
      "POST /accounts HTTP/1.1\r\nHost: x\r\nContent-Length: "
      "4294967296\r\n\r\n",
      size_t{1} << 30, std::chrono::seconds{2});
  BOOST_CHECK(!endless.write_error.empty());
  BOOST_CHECK_LT(endless.body_written, size_t{256} << 20);
  BOOST_CHECK_GT(endless.body_written, size_t{64} << 20);
  // The node serves on.
  auto r = c.call("POST", "/accounts", R"({"id":"a1","owner":"x"})");
  BOOST_REQUIRE_MESSAGE(r, c.error);
  BOOST_CHECK_EQUAL(r->status, 201u);
}

BOOST_AUTO_TEST_CASE(help_and_bad_options_exit_cleanly) {
  auto run = [](std::vector<std::string> args) {
    auto pid = ::fork();
    if (pid == 0) {
      std::vector<char*> argv{const_cast<char*>(MNEMO_BANK_NODE)};
      for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::freopen("/dev/null", "w", stdout);
      ::freopen("/dev/null", "w", stderr);
      ::execv(MNEMO_BANK_NODE, argv.data());
      ::_exit(127);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  BOOST_CHECK_EQUAL(run({"--help"}), 0);
  BOOST_CHECK_EQUAL(run({"--listen", "nonsense"}), 2);
  BOOST_CHECK_EQUAL(run({"--no-such-option=1"}), 2);
  BOOST_CHECK_EQUAL(run({"--data", "/proc/forbidden/x"}), 1);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(bank_node_crash)

// Many clients deposit, withdraw and transfer while the node is killed with
// SIGKILL at random moments; after each restart the commands whose answer
// was lost are retried with their ids. In the end every acknowledged
// command is reflected exactly once, money is conserved, no transfer is
// left running, and the read model equals the aggregates.
BOOST_AUTO_TEST_CASE(kill_9_loop_loses_nothing_acknowledged) {
  auto dir = temp_dir("mnemo-bank-crash");
  ledger book{20};
  std::mt19937 rng{4242};
  {
    auto node = start_node(dir);
    client c{node->port()};
    BOOST_REQUIRE(book.open_all(c));
  }
  constexpr int rounds = 8;
  for (int round = 0; round < rounds; ++round) {
    auto node = start_node(dir);
    {
      client c{node->port()};
      BOOST_REQUIRE(book.retry_unknown(c));
    }
    std::atomic<bool> stop{false};
    std::vector<std::thread> workers;
    for (unsigned w = 0; w < 6; ++w)
      workers.emplace_back([&, w] {
        book.work(node->port(), static_cast<unsigned>(round * 100 + w), stop);
      });
    std::this_thread::sleep_for(
        std::chrono::milliseconds{150 + static_cast<int>(rng() % 450)});
    node->kill();
    stop = true;
    for (auto& t : workers) t.join();
    BOOST_TEST_MESSAGE("round " << round << ": unknown after kill "
                                << book.unknown_count());
  }
  auto node = start_node(dir);
  client c{node->port()};
  check_final_state(c, book);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(bank_node_shutdown)

// SIGTERM under load: every request the node read gets an HTTP answer
// (its result, or 503 shutting_down), none is cut off; the node exits 0;
// after a restart every acknowledged command is there.
BOOST_AUTO_TEST_CASE(sigterm_under_load_fails_no_request_in_flight) {
  auto dir = temp_dir("mnemo-bank-term");
  ledger book{20};
  for (int round = 0; round < 3; ++round) {
    auto node = start_node(dir);
    if (round == 0) {
      client c{node->port()};
      BOOST_REQUIRE(book.open_all(c));
    }
    std::atomic<bool> stop{false};
    std::vector<std::thread> workers;
    for (unsigned w = 0; w < 6; ++w)
      workers.emplace_back([&, w] {
        book.work(node->port(), static_cast<unsigned>(1000 + round * 10 + w),
                  stop);
      });
    std::this_thread::sleep_for(std::chrono::milliseconds{400});
    node->signal(SIGTERM);
    auto status = node->wait(std::chrono::seconds{30});
    stop = true;
    for (auto& t : workers) t.join();
    BOOST_REQUIRE(status);
    BOOST_CHECK(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
    BOOST_CHECK_EQUAL(book.lost_in_flight(), 0u);
    BOOST_CHECK_EQUAL(book.unknown_count(), 0u);
  }
  BOOST_TEST_MESSAGE(
      "503 shutting_down answers: " << book.shutting_down_answers());
  auto node = start_node(dir);
  client c{node->port()};
  check_final_state(c, book);
}

BOOST_AUTO_TEST_SUITE_END()
