// Changing a cluster's members: two bank nodes become three. With the
// nodes stopped, mnemo-cluster exports the streams the new member list
// places on the new node, imports them there and releases them on their
// old owners; the three nodes then serve every account and transfer with
// all of its history, and nothing is counted twice.

#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <sstream>
#include <thread>

#include "../support/etcd_server.hpp"
#include "../support/free_ports.hpp"
#include "node_process.hpp"
#include "tool_run.hpp"

using namespace testnode;
using json = nlohmann::json;

namespace {

constexpr const char* move_secret = "0123456789abcdef-move-secret";

struct member_set {
  std::vector<std::string> ids;
  std::string list;
};

struct move_fixture {
  uint16_t base = mnemo::test::free_port_block(3);
  std::vector<std::string> dirs;
  std::vector<std::unique_ptr<process>> nodes;

  move_fixture() {
    for (int i = 0; i < 3; ++i)
      dirs.push_back(temp_dir("mnemo-move-n" + std::to_string(i + 1)));
  }

  std::string members(int n) const {
    std::string list;
    for (int i = 0; i < n; ++i) {
      if (i > 0) list += ",";
      list += "n" + std::to_string(i + 1) +
              "@127.0.0.1:" + std::to_string(base + i);
    }
    return list;
  }

  void start_all(int n) {
    nodes.clear();
    for (int i = 0; i < n; ++i)
      nodes.push_back(std::make_unique<process>(
          MNEMO_BANK_NODE,
          std::vector<std::string>{
              "--data", dirs[i], "--listen", "127.0.0.1:0",
              "--cluster.node-id=n" + std::to_string(i + 1),
              "--cluster.members=" + members(n),
              std::string{"--cluster.secret="} + move_secret, "--cluster.shards=16",
              "--cluster.plain-tcp", "--cluster.retry-ms=100"}));
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{15};
    for (bool joined = false; !joined;) {
      BOOST_REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline,
                            "the members did not join");
      joined = true;
      for (auto& p : nodes) {
        client c{p->port()};
        auto h = body_of(c.call("GET", "/health"));
        if (!h.contains("cluster") ||
            h["cluster"]["connected"].size() + 1 != nodes.size())
          joined = false;
      }
      if (!joined) std::this_thread::sleep_for(std::chrono::milliseconds{50});
    }
  }

  void stop_all() {
    for (auto& p : nodes) p->signal(SIGTERM);
    for (auto& p : nodes) {
      auto status = p->wait(std::chrono::seconds{20});
      BOOST_REQUIRE(status);
      BOOST_CHECK(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
    }
    nodes.clear();
  }

  std::vector<std::string> plan_args(const std::string& command, int i) {
    return {command,
            "--data",
            dirs[i],
            "--node-id",
            "n" + std::to_string(i + 1),
            "--members",
            members(3),
            "--shards",
            "16",
            "--route",
            "account-=account",
            "--route",
            "saga-transfer-=saga.transfer"};
  }
};

// What a client sees of an account.
json account_view(client& c, const std::string& id) {
  auto a = body_of(c.call("GET", "/accounts/" + id));
  return json{{"balance", a["balance"]},
              {"open", a["open"]},
              {"version", a["version"]}};
}

}  // namespace

BOOST_AUTO_TEST_SUITE(bank_cluster_move)

BOOST_AUTO_TEST_CASE(two_members_become_three_and_keep_every_event) {
  move_fixture f;
  f.start_all(2);
  client c1{f.nodes[0]->port()};
  client c2{f.nodes[1]->port()};
  constexpr int accounts = 30;
  for (int i = 0; i < accounts; ++i) {
    auto id = "m" + std::to_string(i);
    auto& c = i % 2 ? c2 : c1;
    BOOST_REQUIRE_EQUAL(
        status_of(c.call("POST", "/accounts",
                         json{{"id", id}, {"owner", "o"}}.dump())),
        201u);
    for (int k = 0; k <= i % 4; ++k)
      BOOST_REQUIRE_EQUAL(
          status_of(c.call("POST", "/accounts/" + id + "/deposits",
                           json{{"amount", 100 + i}}.dump())),
          200u);
  }
  BOOST_REQUIRE_EQUAL(status_of(c1.call("POST", "/accounts/m7/withdrawals",
                                        json{{"amount", 50}}.dump())),
                      200u);
  for (int t = 0; t < 10; ++t)
    BOOST_REQUIRE_EQUAL(
        status_of(c2.call("POST", "/transfers",
                          json{{"id", "mt" + std::to_string(t)},
                               {"from", "m" + std::to_string(t)},
                               {"to", "m" + std::to_string(29 - t)},
                               {"amount", 20}}
                              .dump())),
        202u);
  for (int t = 0; t < 10; ++t) {
    std::string status;
    for (int k = 0; k < 300 && status != "completed"; ++k) {
      status = body_of(c1.call("GET", "/transfers/mt" + std::to_string(t)))
                   .value("status", "");
      if (status != "completed")
        std::this_thread::sleep_for(std::chrono::milliseconds{20});
    }
    BOOST_REQUIRE_EQUAL(status, "completed");
  }
  BOOST_REQUIRE_EQUAL(status_of(c1.call("POST", "/accounts/m29/close")), 200u);
  std::map<std::string, json> before;
  int64_t total = 0;
  for (int i = 0; i < accounts; ++i) {
    auto id = "m" + std::to_string(i);
    before[id] = account_view(c1, id);
    total += before[id]["balance"].get<int64_t>();
  }

  // A running node keeps its directory: the tool refuses to export.
  auto busy_args = f.plan_args("export", 0);
  busy_args.insert(busy_args.end(), {"--out", temp_dir("mnemo-move-busy")});
  auto busy = cluster_tool(busy_args);
  BOOST_CHECK_NE(busy.exit_code, 0);
  BOOST_CHECK_MESSAGE(
      busy.text.find("stop the node first") != std::string::npos, busy.text);
  f.stop_all();

  // Plan: adding a member moves streams to it only.
  size_t moving = 0;
  std::string late;  // an account that moves from n1
  for (int i = 0; i < 2; ++i) {
    auto plan = cluster_tool(f.plan_args("plan", i));
    BOOST_REQUIRE_MESSAGE(plan.exit_code == 0, plan.text);
    for (auto& line : plan.lines) {
      if (!line.contains("stream")) continue;
      BOOST_CHECK_EQUAL(line["to"], "n3");
      if (i == 0 && line["type"] == "account" && line["id"] != "m29")
        late = line["id"];
    }
    auto& summary = plan.lines.back();
    BOOST_CHECK_EQUAL(summary["unrouted"], 0);
    moving += summary["moving"].get<size_t>();
  }
  BOOST_TEST_MESSAGE(moving << " streams move to n3");
  BOOST_REQUIRE(moving > 0);

  auto out = temp_dir("mnemo-move-bundles");
  std::vector<std::string> files;
  for (int i = 0; i < 2; ++i) {
    auto args = f.plan_args("export", i);
    args.insert(args.end(), {"--out", out});
    auto ex = cluster_tool(args);
    BOOST_REQUIRE_MESSAGE(ex.exit_code == 0, ex.text);
    for (auto& line : ex.lines)
      if (line.contains("file")) files.push_back(line["file"]);
  }
  BOOST_REQUIRE_EQUAL(files.size(), 2u);
  BOOST_REQUIRE(!late.empty());
  // A bundle is addressed: n1 cannot import what is meant for n3.
  auto wrong = cluster_tool(
      {"import", "--data", f.dirs[0], "--node-id", "n1", files[0]});
  BOOST_CHECK_NE(wrong.exit_code, 0);
  BOOST_CHECK_MESSAGE(wrong.text.find("for member 'n3'") != std::string::npos,
                      wrong.text);
  // Import on n3 (twice: a repeated import changes nothing), then release.
  for (int round = 0; round < 2; ++round) {
    std::vector<std::string> args{"import", "--data", f.dirs[2], "--node-id",
                                  "n3"};
    args.insert(args.end(), files.begin(), files.end());
    auto imp = cluster_tool(args);
    BOOST_REQUIRE_MESSAGE(imp.exit_code == 0, imp.text);
  }
  // n1 took one more deposit after its export (someone ran a node on it):
  // its release refuses, a new export catches n3 up, then it releases.
  auto late_deposit =
      run(MNEMO_BANK_CLI, {"--data-dir=" + f.dirs[0], "deposit", late, "5"});
  BOOST_REQUIRE_MESSAGE(late_deposit.exit_code == 0, late_deposit.text);
  before[late]["balance"] = before[late]["balance"].get<int64_t>() + 5;
  before[late]["version"] = before[late]["version"].get<int64_t>() + 1;
  total += 5;
  auto refused = cluster_tool(
      {"release", "--data", f.dirs[0], "--node-id", "n1", files[0]});
  BOOST_CHECK_NE(refused.exit_code, 0);
  BOOST_CHECK_MESSAGE(refused.text.find("changed since") != std::string::npos,
                      refused.text);
  {
    auto args = f.plan_args("export", 0);
    args.insert(args.end(), {"--out", out});
    auto ex = cluster_tool(args);
    BOOST_REQUIRE_MESSAGE(ex.exit_code == 0, ex.text);
    auto imp = cluster_tool(
        {"import", "--data", f.dirs[2], "--node-id", "n3", files[0]});
    BOOST_REQUIRE_MESSAGE(imp.exit_code == 0, imp.text);
  }
  for (int i = 0; i < 2; ++i) {
    auto rel = cluster_tool({"release", "--data", f.dirs[i], "--node-id",
                             "n" + std::to_string(i + 1), files[i]});
    BOOST_REQUIRE_MESSAGE(rel.exit_code == 0, rel.text);
  }
  // Nothing is left to move.
  for (int i = 0; i < 2; ++i) {
    auto again = cluster_tool(f.plan_args("plan", i));
    BOOST_CHECK_EQUAL(again.lines.back()["moving"], 0);
  }

  f.start_all(3);
  std::vector<std::unique_ptr<client>> cs;
  for (auto& n : f.nodes) cs.push_back(std::make_unique<client>(n->port()));
  // Every node answers every account with its whole history.
  for (auto& [id, view] : before)
    for (auto& c : cs) BOOST_CHECK_EQUAL(account_view(*c, id), view);
  for (int t = 0; t < 10; ++t)
    for (auto& c : cs)
      BOOST_CHECK_EQUAL(
          body_of(c->call("GET", "/transfers/mt" + std::to_string(t)))
              .value("status", ""),
          "completed");
  // The moved streams live on n3 now, with every event.
  auto streams = run(MNEMO_INSPECT, {f.dirs[2], "streams"});
  size_t on_n3 = 0;
  for (auto& line : streams.lines) {
    auto name = line.value("stream", "");
    if (name.rfind("account-", 0) != 0) continue;
    ++on_n3;
    auto events = run(MNEMO_INSPECT, {f.dirs[2], "stream", name});
    BOOST_CHECK_EQUAL(events.lines.size(),
                      before[name.substr(8)]["version"].get<size_t>());
  }
  BOOST_CHECK(on_n3 > 0);
  // The read models of the three nodes cover each account once.
  int64_t model_total = 0;
  int64_t model_accounts = 0;
  for (auto& c : cs) {
    json b;
    // The released nodes rebuild their models at start.
    for (int k = 0; k < 100; ++k) {
      b = body_of(c->call("GET", "/balances"));
      if (b.contains("total")) break;
      std::this_thread::sleep_for(std::chrono::milliseconds{20});
    }
    model_total += b.value("total", int64_t{0});
    model_accounts += b.value("accounts", int64_t{0});
  }
  BOOST_CHECK_EQUAL(model_accounts, accounts);
  BOOST_CHECK_EQUAL(model_total, total);
  // Moved accounts take new commands through any node.
  for (int i = 0; i < accounts; ++i) {
    auto id = "m" + std::to_string(i);
    if (i == 29) continue;  // closed
    auto r = cs[i % 3]->call("POST", "/accounts/" + id + "/deposits",
                             json{{"amount", 1}}.dump());
    BOOST_CHECK_EQUAL(status_of(r), 200u);
    BOOST_CHECK_EQUAL(body_of(r)["balance"],
                      before[id]["balance"].get<int64_t>() + 1);
  }
  f.stop_all();
}

// `mnemo-cluster replicas` against a real etcd (no nodes: the keys a
// cluster's members and leaders would write are put by hand): it prints
// the set, changes it one guarded step at a time, and refuses with a clear
// error and exit 1 what a change needs but is missing.
BOOST_AUTO_TEST_CASE(replicas_shows_and_changes_a_shards_replica_set) {
  mnemo::test::etcd_server etcd;
  auto client = etcd.client();
  const std::string base = "/mnemo/tool/shards/5/";
  auto voters = client->put(base + "voters",
                            R"({"voters":["a","b","c"],"previous":[]})");
  BOOST_REQUIRE(voters);
  auto endpoint = "127.0.0.1:" + std::to_string(etcd.client_port);
  auto tool = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "replicas");
    for (auto a : {"--etcd", endpoint.c_str(), "--prefix", "/mnemo/tool"})
      args.emplace_back(a);
    auto r = cluster_tool(args);
    BOOST_TEST_MESSAGE(r.text);
    return r;
  };
  auto status = tool({"status", "--shard", "5"});
  BOOST_REQUIRE_EQUAL(status.exit_code, 0);
  BOOST_REQUIRE_EQUAL(status.lines.size(), 1u);
  BOOST_CHECK_EQUAL(status.lines[0]["voters"], json::array({"a", "b", "c"}));
  BOOST_CHECK_EQUAL(status.lines[0]["established"], false);
  auto observed = tool({"observe", "--shard", "5", "--member", "d"});
  BOOST_REQUIRE_EQUAL(observed.exit_code, 0);
  BOOST_CHECK_EQUAL(observed.lines.at(0)["observers"], json::array({"d"}));
  // No leader reported d ready.
  auto early = tool({"promote", "--shard", "5", "--member", "d"});
  BOOST_CHECK_EQUAL(early.exit_code, 1);
  BOOST_CHECK_EQUAL(early.lines.at(0)["code"], "invalid_argument");
  BOOST_CHECK(early.text.find("commit point") != std::string::npos);
  // What a leader of the voters would write: ready and established.
  BOOST_REQUIRE(client->put(base + "ready/d", "a"));
  BOOST_REQUIRE(client->put(base + "established", std::to_string(*voters)));
  auto promoted = tool({"promote", "--shard", "5", "--member", "d"});
  BOOST_REQUIRE_EQUAL(promoted.exit_code, 0);
  BOOST_CHECK_EQUAL(promoted.lines.at(0)["voters"],
                    json::array({"a", "b", "c", "d"}));
  BOOST_CHECK_EQUAL(promoted.lines.at(0)["previous"],
                    json::array({"a", "b", "c"}));
  BOOST_CHECK_EQUAL(promoted.lines.at(0)["established"], false);
  // The next change waits for a leader of the new voters.
  auto removal = tool({"remove", "--shard", "5", "--member", "c"});
  BOOST_CHECK_EQUAL(removal.exit_code, 1);
  BOOST_CHECK(removal.text.find("established") != std::string::npos);
  auto back = tool({"abort", "--shard", "5"});
  BOOST_REQUIRE_EQUAL(back.exit_code, 0);
  BOOST_CHECK_EQUAL(back.lines.at(0)["voters"], json::array({"a", "b", "c"}));
  // A shard without voters, and bad usage.
  auto none = tool({"status", "--shard", "6"});
  BOOST_CHECK_EQUAL(none.exit_code, 1);
  BOOST_CHECK_EQUAL(none.lines.at(0)["code"], "not_found");
  // No member runs (no live keys): nobody can take shard 5 from c.
  auto nobody = tool({"decommission", "--member", "c", "--shard", "5"});
  BOOST_CHECK_EQUAL(nobody.exit_code, 1);
  BOOST_CHECK(nobody.text.find("shard(s) [5]") != std::string::npos);
  BOOST_CHECK_EQUAL(tool({"decommission", "--shard", "5"}).exit_code, 2);
  BOOST_CHECK_EQUAL(tool({"promote", "--shard", "5"}).exit_code, 2);
  BOOST_CHECK_EQUAL(tool({"grow", "--shard", "5"}).exit_code, 2);
}

BOOST_AUTO_TEST_SUITE_END()
