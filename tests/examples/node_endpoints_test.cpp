// What every node built on mnemo::http serves in front of its service, on a
// real bank node: liveness and readiness (also as the mnemo_ready gauge),
// the admin endpoints behind a bearer token or on a loopback listener, and
// secrets from a file or the environment instead of the command line.

#include <unistd.h>

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

// Makes a request and checks its status; returns the reply (an empty
// one if there was none).
reply must(client& c, const std::string& method, const std::string& target,
           unsigned status, const std::string& body = {}) {
  auto r = c.call(method, target, body);
  BOOST_CHECK_MESSAGE(r, method << " " << target << ": " << c.error);
  if (!r) return {};
  BOOST_CHECK_MESSAGE(r->status == status, method << " " << target << ": "
                                                  << r->status << " "
                                                  << r->body);
  return *r;
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
  must(good, "GET", "/admin/projections", 200);

  client none{node.port()};
  none.token.clear();
  auto refused = must(none, "GET", "/admin/projections", 401);
  BOOST_CHECK_EQUAL(refused.json().value("error", ""), "unauthorized");
  client wrong{node.port()};
  wrong.token = admin_token() + "x";
  for (int i = 0; i < 3; ++i) {
    auto r = wrong.call("POST", "/admin/projections/bank.balances/pause");
    BOOST_REQUIRE(r);
    BOOST_CHECK_EQUAL(r->status, 401u);
    // The same answer for a wrong token as for none: no hint.
    BOOST_CHECK_EQUAL(r->body, refused.body);
    BOOST_CHECK(r->body.find(admin_token()) == std::string::npos);
  }
  // Nothing was paused by the refused requests.
  auto st = good.call("GET", "/admin/projections");
  BOOST_REQUIRE(st);
  auto listing = st->json();  // the loop must not run over a temporary
  for (auto& p : listing["projections"])
    BOOST_CHECK_MESSAGE(!p.value("paused", true), p.dump());
  // The 401 names the scheme.
  auto raw = none.raw(
      "GET /admin/projections HTTP/1.1\r\nHost: x\r\nConnection: "
      "close\r\n\r\n");
  BOOST_CHECK_MESSAGE(
      raw.find("WWW-Authenticate: Bearer realm=\"mnemo-admin\"") !=
          std::string::npos,
      raw);
  // Spellings of /admin that a service might decode or fold are guarded
  // too, and an absolute-form target never passes the guard.
  must(none, "GET", "/%61dmin/projections", 401);
  must(none, "GET", "/Admin/projections", 401);
  auto absolute = none.raw(
      "GET http://127.0.0.1/admin/projections HTTP/1.1\r\nHost: x\r\n"
      "Connection: close\r\n\r\n");
  BOOST_CHECK_MESSAGE(absolute.find(" 400 ") != std::string::npos &&
                          absolute.find("invalid_target") != std::string::npos,
                      absolute);
  // The service's own routes need no token.
  must(none, "GET", "/health", 200);
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
  auto r = must(c, "GET", "/admin/projections", 404);
  BOOST_CHECK_EQUAL(r.json().value("error", ""), "admin_disabled");
  must(c, "GET", "/health", 200);  // the service still serves
}

BOOST_AUTO_TEST_CASE(an_admin_listener_serves_admin_health_and_metrics_only) {
  process node{MNEMO_BANK_NODE,
               node_args(temp_dir("mnemo-admin-listen"), {"--admin-listen=0"})};
  BOOST_REQUIRE_NE(node.admin_port(), 0);
  client admin{node.admin_port()};
  admin.token.clear();  // a loopback listener without a token asks for none
  must(admin, "GET", "/admin/projections", 200);
  must(admin, "GET", "/metrics", 200);
  must(admin, "GET", "/health/ready", 200);
  auto deposit =
      must(admin, "POST", "/accounts/a1/deposits", 404, R"({"amount":5})");
  BOOST_CHECK_MESSAGE(
      deposit.json().value("message", "").find("serves the admin endpoints") !=
          std::string::npos,
      deposit.body);
  // The main listener keeps them off.
  client c{node.port()};
  auto off = must(c, "GET", "/admin/projections", 404);
  BOOST_CHECK_EQUAL(off.json().value("error", ""), "admin_disabled");
}

BOOST_AUTO_TEST_CASE(live_and_ready_and_the_build_in_the_metrics) {
  // A file token with a trailing newline, as `echo` writes it.
  auto dir = temp_dir("mnemo-health");
  auto token_file = write_file(dir, "token", "file-token-123\n");
  process node{MNEMO_BANK_NODE,
               node_args(dir + "/data", {"--admin-token-file=" + token_file})};
  client c{node.port()};
  c.token = "file-token-123";
  auto live = must(c, "GET", "/health/live", 200);
  BOOST_CHECK_EQUAL(live.json().value("status", ""), "live");
  auto ready = must(c, "GET", "/health/ready", 200);
  BOOST_CHECK_EQUAL(ready.json().value("status", ""), "ready");
  must(c, "POST", "/health/ready", 405);
  auto admin = must(c, "GET", "/admin/projections", 200);
  must(c, "GET", "/nowhere/x", 404);
  auto metrics = must(c, "GET", "/metrics", 200);
  BOOST_CHECK_EQUAL(gauge(metrics.body, "mnemo_ready"), 1.0);
  for (auto* series :
       {"mnemo_build_info{version=\"",
        "mnemo_http_requests_total{route=\"health\",status_class=\"2xx\"} 2",
        "mnemo_http_requests_total{route=\"health\",status_class=\"4xx\"} 1",
        "mnemo_http_requests_total{route=\"admin\",status_class=\"2xx\"} 1",
        "mnemo_http_requests_total{route=\"nowhere\",status_class=\"4xx\"} 1"})
    BOOST_CHECK_MESSAGE(metrics.body.find(series) != std::string::npos,
                        series << " not in\n"
                               << metrics.body);
}

// The exposition, after deposits, a transfer (a saga) and the projections
// ran, passes Prometheus' own linter (`promtool check metrics`, Debian
// package prometheus, in .ci/packages.txt).
BOOST_AUTO_TEST_CASE(the_exposition_passes_promtool) {
  auto promtool = std::string{"/usr/bin/promtool"};
  BOOST_REQUIRE_MESSAGE(::access(promtool.c_str(), X_OK) == 0,
                        "promtool is missing: install the Debian package "
                        "prometheus (it is in .ci/packages.txt)");
  auto dir = temp_dir("mnemo-promtool");
  process node{MNEMO_BANK_NODE, node_args(dir + "/data")};
  client c{node.port()};
  must(c, "POST", "/accounts", 201, R"({"id":"a1","owner":"ann"})");
  must(c, "POST", "/accounts", 201, R"({"id":"a2","owner":"bob"})");
  must(c, "POST", "/accounts/a1/deposits", 200, R"({"amount":100})");
  must(c, "POST", "/transfers", 202,
       R"({"id":"t1","from":"a1","to":"a2","amount":40})");
  must(c, "GET", "/admin/projections", 200);
  must(c, "GET", "/nowhere", 404);
  auto metrics = must(c, "GET", "/metrics", 200);
  auto file = write_file(dir, "metrics.txt", metrics.body);
  auto out = dir + "/promtool.out";
  auto rc = std::system(
      (promtool + " check metrics < " + file + " > " + out + " 2>&1").c_str());
  std::ifstream in{out};
  std::string said{std::istreambuf_iterator<char>{in},
                   std::istreambuf_iterator<char>{}};
  BOOST_CHECK_MESSAGE(rc == 0, "promtool check metrics failed:\n"
                                   << said << "\non:\n"
                                   << metrics.body);
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
  must(c, "GET", "/health/live", 200);
  auto ready = must(c, "GET", "/health/ready", 503);
  BOOST_CHECK_MESSAGE(
      ready.json().value("reason", "").find("not joined") != std::string::npos,
      ready.body);
  auto metrics = must(c, "GET", "/metrics", 200);
  BOOST_CHECK_EQUAL(gauge(metrics.body, "mnemo_ready"), 0.0);
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
  metrics = must(c, "GET", "/metrics", 200);
  BOOST_CHECK_EQUAL(gauge(metrics.body, "mnemo_ready"), 1.0);
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
