// What every node built on mnemo::http serves in front of its service, on a
// real bank node: liveness and readiness (also as the mnemo_ready gauge),
// the admin endpoints behind a bearer token or on a loopback listener, and
// secrets from a file or the environment instead of the command line.

#include <cstdlib>
#include <fstream>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "../support/free_ports.hpp"
#include "node_process.hpp"

using namespace testnode;
using json = nlohmann::json;

namespace {

std::vector<std::string> node_args(const std::string& dir,
                                   std::vector<std::string> more = {}) {
  std::vector<std::string> args{"--data", dir, "--listen", "127.0.0.1:0"};
  for (auto& m : more) args.push_back(m);
  return args;
}

size_t count_lines(const std::vector<std::string>& lines,
                   const std::string& needle) {
  size_t n = 0;
  for (auto& l : lines) n += l.find(needle) != std::string::npos ? 1 : 0;
  return n;
}

// The value of gauge `name` (without labels) in a Prometheus exposition.
double gauge(const std::string& text, const std::string& name) {
  auto at = text.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + name.size() + 2));
}

std::string write_file(const std::string& dir, const std::string& name,
                       const std::string& content) {
  auto path = dir + "/" + name;
  std::ofstream{path} << content;
  return path;
}

template <class Pred>
bool eventually(Pred pred, std::chrono::seconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds{50});
  }
  return pred();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(node_endpoints)

BOOST_AUTO_TEST_CASE(admin_endpoints_need_the_bearer_token) {
  // The harness starts nodes with --admin-token-file and its client sends
  // the token; this client sends none, then a wrong one.
  process node{MNEMO_BANK_NODE, node_args(temp_dir("mnemo-admin-token"))};
  client good{node.port()};
  auto listed = good.call("GET", "/admin/projections");
  BOOST_REQUIRE(listed);
  BOOST_CHECK_EQUAL(listed->status, 200u);

  client none{node.port()};
  none.token.clear();
  auto refused = none.call("GET", "/admin/projections");
  BOOST_REQUIRE(refused);
  BOOST_CHECK_EQUAL(refused->status, 401u);
  BOOST_CHECK_EQUAL(refused->json().value("error", ""), "unauthorized");
  client wrong{node.port()};
  wrong.token = admin_token() + "x";
  for (int i = 0; i < 3; ++i) {
    auto r = wrong.call("POST", "/admin/projections/bank.balances/pause");
    BOOST_REQUIRE(r);
    BOOST_CHECK_EQUAL(r->status, 401u);
    // The same answer for a wrong token as for none: no hint.
    BOOST_CHECK_EQUAL(r->body, refused->body);
    BOOST_CHECK(r->body.find(admin_token()) == std::string::npos);
  }
  // Nothing was paused by the refused requests.
  auto st = good.call("GET", "/admin/projections");
  BOOST_REQUIRE(st);
  for (auto& p : st->json()["projections"])
    BOOST_CHECK_MESSAGE(!p.value("paused", true), p.dump());
  // The 401 names the scheme.
  auto raw = none.raw(
      "GET /admin/projections HTTP/1.1\r\nHost: x\r\nConnection: "
      "close\r\n\r\n");
  BOOST_CHECK_MESSAGE(
      raw.find("WWW-Authenticate: Bearer realm=\"mnemo-admin\"") !=
          std::string::npos,
      raw);
  // The service's own routes need no token.
  auto health = none.call("GET", "/health");
  BOOST_REQUIRE(health);
  BOOST_CHECK_EQUAL(health->status, 200u);
  // One log line for the client address, whatever it sent after.
  node.signal(SIGTERM);
  BOOST_REQUIRE(node.wait(std::chrono::seconds{20}));
  auto lines = node.drain_stdout();
  BOOST_CHECK_EQUAL(count_lines(lines, "\"admin_unauthorized\""), 1u);
  for (auto& l : lines)
    BOOST_CHECK_MESSAGE(l.find(admin_token()) == std::string::npos, l);
}

BOOST_AUTO_TEST_CASE(without_token_or_admin_listener_admin_is_off) {
  // No --admin-token-file, no MNEMO_ADMIN_TOKEN, no --admin-listen: off.
  ::unsetenv("MNEMO_ADMIN_TOKEN");
  process node{MNEMO_BANK_NODE,
               node_args(temp_dir("mnemo-admin-off"), {no_admin_token})};
  client c{node.port()};
  auto r = c.call("GET", "/admin/projections");
  BOOST_REQUIRE(r);
  BOOST_CHECK_EQUAL(r->status, 404u);
  BOOST_CHECK_EQUAL(r->json().value("error", ""), "admin_disabled");
  auto health = c.call("GET", "/health");  // the service still serves
  BOOST_REQUIRE(health);
  BOOST_CHECK_EQUAL(health->status, 200u);
}

BOOST_AUTO_TEST_CASE(an_admin_listener_serves_admin_health_and_metrics_only) {
  process node{MNEMO_BANK_NODE,
               node_args(temp_dir("mnemo-admin-listen"), {"--admin-listen=0"})};
  BOOST_REQUIRE_NE(node.admin_port(), 0);
  client admin{node.admin_port()};
  admin.token.clear();  // a loopback listener without a token asks for none
  auto listed = admin.call("GET", "/admin/projections");
  BOOST_REQUIRE(listed);
  BOOST_CHECK_EQUAL(listed->status, 200u);
  auto metrics = admin.call("GET", "/metrics");
  BOOST_REQUIRE(metrics);
  BOOST_CHECK_EQUAL(metrics->status, 200u);
  auto ready = admin.call("GET", "/health/ready");
  BOOST_REQUIRE(ready);
  BOOST_CHECK_EQUAL(ready->status, 200u);
  auto deposit = admin.call("POST", "/accounts/a1/deposits", R"({"amount":5})");
  BOOST_REQUIRE(deposit);
  BOOST_CHECK_EQUAL(deposit->status, 404u);
  BOOST_CHECK_MESSAGE(
      deposit->json().value("message", "").find("serves the admin endpoints") !=
          std::string::npos,
      deposit->body);
  // The main listener keeps them off.
  client c{node.port()};
  auto off = c.call("GET", "/admin/projections");
  BOOST_REQUIRE(off);
  BOOST_CHECK_EQUAL(off->status, 404u);
  BOOST_CHECK_EQUAL(off->json().value("error", ""), "admin_disabled");
}

BOOST_AUTO_TEST_CASE(live_and_ready_and_the_build_in_the_metrics) {
  // A file token with a trailing newline, as `echo` writes it.
  auto dir = temp_dir("mnemo-health");
  auto token_file = write_file(dir, "token", "file-token-123\n");
  process node{MNEMO_BANK_NODE,
               node_args(dir + "/data", {"--admin-token-file=" + token_file})};
  client c{node.port()};
  c.token = "file-token-123";
  auto live = c.call("GET", "/health/live");
  BOOST_REQUIRE(live);
  BOOST_CHECK_EQUAL(live->status, 200u);
  BOOST_CHECK_EQUAL(live->json().value("status", ""), "live");
  auto ready = c.call("GET", "/health/ready");
  BOOST_REQUIRE(ready);
  BOOST_CHECK_EQUAL(ready->status, 200u);
  BOOST_CHECK_EQUAL(ready->json().value("status", ""), "ready");
  auto bad = c.call("POST", "/health/ready");
  BOOST_REQUIRE(bad);
  BOOST_CHECK_EQUAL(bad->status, 405u);
  auto admin = c.call("GET", "/admin/projections");
  BOOST_REQUIRE(admin);
  BOOST_CHECK_EQUAL(admin->status, 200u);
  auto metrics = c.call("GET", "/metrics");
  BOOST_REQUIRE(metrics);
  BOOST_CHECK_EQUAL(gauge(metrics->body, "mnemo_ready"), 1.0);
  BOOST_CHECK_MESSAGE(
      metrics->body.find("mnemo_build_info{version=\"") != std::string::npos,
      metrics->body.substr(0, 2000));
}

// A member of a two-member cluster is live at once but ready only once it
// has joined: started alone it answers 503 with the reason (and
// mnemo_ready 0), and 200 once the other member is up. The members read
// the cluster secret from a file and from the environment.
BOOST_AUTO_TEST_CASE(a_cluster_member_is_ready_once_it_joined) {
  auto base = mnemo::test::free_port_block(2);
  std::string members = "n1@127.0.0.1:" + std::to_string(base) +
                        ",n2@127.0.0.1:" + std::to_string(base + 1);
  auto dir = temp_dir("mnemo-ready-cluster");
  auto secret_file =
      write_file(dir, "secret", "0123456789abcdef-from-a-file\n");
  auto member = [&](int i, std::vector<std::string> more) {
    std::vector<std::string> args{"--data",
                                  dir + "/n" + std::to_string(i),
                                  "--listen",
                                  "127.0.0.1:0",
                                  "--cluster.node-id=n" + std::to_string(i),
                                  "--cluster.members=" + members,
                                  "--cluster.retry-ms=100",
                                  "--cluster.plain-tcp"};
    for (auto& m : more) args.push_back(m);
    return std::make_unique<process>(MNEMO_BANK_NODE, args);
  };
  auto n1 = member(1, {"--cluster.secret-file=" + secret_file});
  client c{n1->port()};
  auto live = c.call("GET", "/health/live");
  BOOST_REQUIRE(live);
  BOOST_CHECK_EQUAL(live->status, 200u);
  auto ready = c.call("GET", "/health/ready");
  BOOST_REQUIRE(ready);
  BOOST_CHECK_EQUAL(ready->status, 503u);
  BOOST_CHECK_MESSAGE(
      ready->json().value("reason", "").find("not joined") != std::string::npos,
      ready->body);
  auto metrics = c.call("GET", "/metrics");
  BOOST_REQUIRE(metrics);
  BOOST_CHECK_EQUAL(gauge(metrics->body, "mnemo_ready"), 0.0);
  // The second member takes the same secret from the environment (a
  // different one would be refused at join, and n1 would stay unready).
  ::setenv("MNEMO_CLUSTER_SECRET", "0123456789abcdef-from-a-file", 1);
  auto n2 = member(2, {});
  ::unsetenv("MNEMO_CLUSTER_SECRET");
  BOOST_CHECK(eventually(
      [&] {
        auto r = c.call("GET", "/health/ready");
        return r && r->status == 200;
      },
      std::chrono::seconds{15}));
  metrics = c.call("GET", "/metrics");
  BOOST_REQUIRE(metrics);
  BOOST_CHECK_EQUAL(gauge(metrics->body, "mnemo_ready"), 1.0);
  // Secret on the command line and in a file: refused, naming both.
  auto out = temp_dir("mnemo-ready-both");
  BOOST_CHECK_THROW(
      process(MNEMO_BANK_NODE,
              {"--data", out, "--listen", "127.0.0.1:0", "--cluster.node-id=n1",
               "--cluster.members=" + members,
               "--cluster.secret=0123456789abcdef-x",
               "--cluster.secret-file=" + secret_file, "--cluster.plain-tcp"},
              std::chrono::seconds{5}),
      std::runtime_error);
}

BOOST_AUTO_TEST_SUITE_END()
