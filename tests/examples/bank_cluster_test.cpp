// Three bank nodes as a cluster on loopback: every node serves every
// account (commands travel to the owner), transfers cross nodes and
// conserve money, a killed owner answers 503 owner_unavailable at once
// while the others keep serving, a restarted one rejoins with all its
// acknowledged state, a node with a wrong secret or another cluster view
// cannot join, every node's cluster-wide balances follow every node's
// journal across a kill -9, and garbage, oversized protocol headers and
// forged handshakes on the cluster ports drop no link (plain and TLS); a
// cluster needs TLS or an explicit --cluster.plain-tcp.

#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <random>
#include <thread>
#include <tuple>
#include <vector>

#include "../support/free_ports.hpp"
#include "node_process.hpp"

using namespace testnode;
using json = nlohmann::json;

namespace {

constexpr const char* secret = "0123456789abcdef-test-secret";

struct cluster_fixture {
  uint16_t base;
  std::string members;
  std::vector<std::string> dirs;
  std::vector<std::unique_ptr<process>> nodes;

  std::vector<std::string> tls;  // extra options of every member

  explicit cluster_fixture(std::vector<std::string> tls_opts = {})
      : tls(std::move(tls_opts)) {
    // Cluster ports per test process, so that parallel runs do not collide.
    base = mnemo::test::free_port_block(4);  // a fourth for an outsider
    for (int i = 0; i < 3; ++i) {
      if (i > 0) members += ",";
      members += "n" + std::to_string(i + 1) +
                 "@127.0.0.1:" + std::to_string(base + i);
      dirs.push_back(temp_dir("mnemo-cluster-n" + std::to_string(i + 1)));
    }
    for (int i = 0; i < 3; ++i) nodes.push_back(start(i));
    BOOST_REQUIRE(all_joined());
  }

  std::unique_ptr<process> start(
      int i, std::string with_secret = secret, std::string with_members = {},
      std::optional<std::vector<std::string>> with_tls = std::nullopt) {
    std::vector<std::string> args{
        "--data",
        dirs[i],
        "--listen",
        "127.0.0.1:0",
        "--cluster.node-id=n" + std::to_string(i + 1),
        "--cluster.members=" + (with_members.empty() ? members : with_members),
        "--cluster.secret=" + with_secret,
        "--cluster.retry-ms=100"};
    auto& extra = with_tls ? *with_tls : tls;
    if (extra.empty()) args.push_back("--cluster.plain-tcp");
    for (auto opt : extra)  // a copy: %N differs per member
      args.push_back(
          opt.find("%N") == std::string::npos
              ? opt
              : opt.replace(opt.find("%N"), 2, "n" + std::to_string(i + 1)));
    return std::make_unique<process>(MNEMO_BANK_NODE, args);
  }

  // Waits until every running node is connected to every other one.
  bool all_joined(std::chrono::seconds limit = std::chrono::seconds{15}) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      bool ok = true;
      for (auto& n : nodes) {
        if (!n) continue;
        client c{n->port()};
        auto h = c.call("GET", "/health");
        auto body = h ? h->json() : json{};
        size_t running = 0;
        for (auto& m : nodes) running += m ? 1 : 0;
        if (!body.contains("cluster") ||
            body["cluster"]["connected"].size() + 1 != running)
          ok = false;
      }
      if (ok) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds{50});
    }
    return false;
  }
};

// Whether /health lists `id` among the connected members. (With TLS, a
// member's failed handshakes have been seen to drop its links to the
// others for a moment, docs/cluster.md: so the tests check that the
// intruder never joins, not the exact count.)
bool has_member(const json& health, const std::string& id) {
  for (auto& m : health["cluster"]["connected"])
    if (m == id) return true;
  return false;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(bank_cluster)

BOOST_AUTO_TEST_CASE(
    every_node_serves_every_account_and_transfers_cross_nodes) {
  cluster_fixture f;
  std::vector<std::unique_ptr<client>> cs;
  for (auto& n : f.nodes) cs.push_back(std::make_unique<client>(n->port()));
  // Open 12 accounts through all three nodes, deposit through another.
  for (int i = 0; i < 12; ++i) {
    auto id = "a" + std::to_string(i);
    BOOST_REQUIRE_EQUAL(
        status_of(cs[i % 3]->call("POST", "/accounts",
                                  json{{"id", id}, {"owner", "o"}}.dump())),
        201u);
    BOOST_REQUIRE_EQUAL(
        status_of(cs[(i + 1) % 3]->call(
            "POST", "/accounts/" + id + "/deposits",
            json{{"amount", 100}, {"command_id", "d-" + id}}.dump())),
        200u);
  }
  // A repeated command id through a third node applies nothing.
  BOOST_CHECK_EQUAL(
      body_of(cs[2]->call("POST", "/accounts/a0/deposits",
                          json{{"amount", 100}, {"command_id", "d-a0"}}.dump()))
          .value("balance", -1),
      100);
  // Transfers between all pairs, started on rotating nodes.
  for (int i = 0; i < 12; ++i) {
    auto from = "a" + std::to_string(i);
    auto to = "a" + std::to_string((i + 5) % 12);
    BOOST_REQUIRE_EQUAL(
        status_of(cs[i % 3]->call("POST", "/transfers",
                                  json{{"id", "t" + std::to_string(i)},
                                       {"from", from},
                                       {"to", to},
                                       {"amount", 10 + i}}
                                      .dump())),
        202u);
  }
  for (int i = 0; i < 12; ++i) {
    std::string status;
    for (int k = 0; k < 200 && status != "completed"; ++k) {
      status = body_of(cs[(i + 2) % 3]->call(
                           "GET", "/transfers/t" + std::to_string(i)))
                   .value("status", "");
      if (status != "completed")
        std::this_thread::sleep_for(std::chrono::milliseconds{20});
    }
    BOOST_CHECK_EQUAL(status, "completed");
  }
  // Every node sees the same balances; money is conserved.
  int64_t total = 0;
  for (int i = 0; i < 12; ++i) {
    auto id = "a" + std::to_string(i);
    auto b0 = body_of(cs[0]->call("GET", "/accounts/" + id))["balance"];
    BOOST_CHECK_EQUAL(
        b0, body_of(cs[1]->call("GET", "/accounts/" + id))["balance"]);
    BOOST_CHECK_EQUAL(
        b0, body_of(cs[2]->call("GET", "/accounts/" + id))["balance"]);
    total += b0.get<int64_t>();
  }
  BOOST_CHECK_EQUAL(total, 1200);
}

BOOST_AUTO_TEST_CASE(a_killed_owner_fails_fast_and_rejoins_with_its_state) {
  cluster_fixture f;
  client c1{f.nodes[0]->port()};
  for (int i = 0; i < 12; ++i) {
    auto id = "k" + std::to_string(i);
    BOOST_REQUIRE_EQUAL(
        status_of(c1.call("POST", "/accounts",
                          json{{"id", id}, {"owner", "o"}}.dump())),
        201u);
    BOOST_REQUIRE_EQUAL(
        status_of(c1.call("POST", "/accounts/" + id + "/deposits",
                          json{{"amount", 7}}.dump())),
        200u);
  }
  f.nodes[2]->kill();
  f.nodes[2].reset();
  // The accounts n3 owns answer 503 owner_unavailable quickly; the others
  // are served as before.
  size_t unavailable = 0;
  for (int i = 0; i < 12; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    std::optional<reply> r;
    // Until n1 has noticed the loss, a request may still be in flight.
    for (int k = 0; k < 50; ++k) {
      r = c1.call("GET", "/accounts/k" + std::to_string(i));
      if (status_of(r) == 200 || status_of(r) == 503) break;
      std::this_thread::sleep_for(std::chrono::milliseconds{20});
    }
    auto took = std::chrono::steady_clock::now() - t0;
    if (status_of(r) == 503) {
      ++unavailable;
      BOOST_CHECK_EQUAL(body_of(r)["error"], "owner_unavailable");
      BOOST_CHECK(took < std::chrono::seconds{2});
    } else {
      BOOST_CHECK_EQUAL(status_of(r), 200u);
      BOOST_CHECK_EQUAL(body_of(r)["balance"], 7);
    }
  }
  BOOST_TEST_MESSAGE(unavailable
                     << " of 12 accounts belong to the killed node");
  BOOST_CHECK(unavailable > 0 && unavailable < 12);
  f.nodes[2] = f.start(2);
  BOOST_REQUIRE(f.all_joined());
  for (int i = 0; i < 12; ++i)
    BOOST_CHECK_EQUAL(
        body_of(c1.call("GET", "/accounts/k" + std::to_string(i)))["balance"],
        7);
}

BOOST_AUTO_TEST_CASE(a_wrong_secret_or_another_view_cannot_join) {
  cluster_fixture f;
  f.nodes[2]->kill();
  f.nodes[2].reset();
  BOOST_REQUIRE(f.all_joined());
  auto intruder = f.start(2, "not-the-right-secret-at-all");
  // Whether `p` logs a refusal for `why` within 15 s (slow under ASan).
  auto refused_in = [](process& p, const std::string& why) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{15};
    while (std::chrono::steady_clock::now() < deadline) {
      for (auto& line : p.drain_stdout()) {
        auto j = json::parse(line, nullptr, false);
        if (j.is_object() && j.value("what", "") == "join_refused" &&
            j.value("detail", "").find(why) != std::string::npos)
          return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds{50});
    }
    return false;
  };
  BOOST_CHECK(refused_in(*f.nodes[0], "wrong cluster secret"));
  BOOST_CHECK(refused_in(*intruder, "wrong cluster secret"));
  client c1{f.nodes[0]->port()};
  BOOST_CHECK(!has_member(body_of(c1.call("GET", "/health")), "n3"));
  intruder->kill();
  // Another member list: refused for its view.
  auto other = f.start(
      2, secret, f.members + ",n4@127.0.0.1:" + std::to_string(f.base + 3));
  BOOST_CHECK(refused_in(*f.nodes[0], "differs"));
  BOOST_CHECK(refused_in(*other, "differs"));
  BOOST_CHECK(!has_member(body_of(c1.call("GET", "/health")), "n3"));
}

namespace {

// Whether every running node's cluster-wide read model shows `accounts`
// accounts holding `total`, with every source caught up; polls up to 20 s.
bool cluster_models_converge(cluster_fixture& f, uint64_t accounts,
                             int64_t total) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{20};
  json last;
  while (std::chrono::steady_clock::now() < deadline) {
    bool ok = true;
    for (auto& n : f.nodes) {
      if (!n) continue;
      client c{n->port()};
      last = body_of(c.call("GET", "/cluster/balances"));
      if (last.value("accounts", uint64_t{0}) != accounts ||
          last.value("total", int64_t{-1}) != total ||
          last["sources"].size() != 3)
        ok = false;
      else
        for (auto& [member, src] : last["sources"].items())
          if (src.value("lag", 1) != 0 || !src.value("available", false))
            ok = false;
      if (!ok) break;
    }
    if (ok) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds{50});
  }
  BOOST_TEST_MESSAGE("last /cluster/balances: " << last.dump());
  return false;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_cluster_wide_read_model_survives_a_killed_node) {
  cluster_fixture f;
  std::vector<std::unique_ptr<client>> cs;
  for (auto& n : f.nodes) cs.push_back(std::make_unique<client>(n->port()));
  int64_t total = 0;
  int k = 0;
  // Deposits whose outcome the client did not learn: sent again later with
  // the same command id, which applies them at most once.
  std::vector<std::tuple<std::string, std::string, int64_t>> unsure;
  auto deposit = [&](client& c, const std::string& id, int64_t amount) {
    auto command_id = "w" + std::to_string(k++);
    auto r =
        c.call("POST", "/accounts/" + id + "/deposits",
               json{{"amount", amount}, {"command_id", command_id}}.dump());
    if (status_of(r) == 200)
      total += amount;
    else
      unsure.emplace_back(id, command_id, amount);
    return status_of(r);
  };
  // Accounts on every member, opened and funded through rotating nodes.
  for (int i = 0; i < 15; ++i) {
    auto id = "c" + std::to_string(i);
    BOOST_REQUIRE_EQUAL(
        status_of(cs[i % 3]->call("POST", "/accounts",
                                  json{{"id", id}, {"owner", "o"}}.dump())),
        201u);
    BOOST_REQUIRE_EQUAL(deposit(*cs[(i + 1) % 3], id, 10 * (i + 1)), 200u);
  }
  BOOST_CHECK(cluster_models_converge(f, 15, total));
  // n3 dies: the others keep following each other; its accounts refuse.
  f.nodes[2]->kill();
  f.nodes[2].reset();
  BOOST_REQUIRE(f.all_joined());
  unsigned refused = 0;
  for (int i = 0; i < 15; ++i)
    refused += deposit(*cs[0], "c" + std::to_string(i), 3) == 503 ? 1 : 0;
  BOOST_CHECK(refused > 0 && refused < 15);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
  json seen;
  while (std::chrono::steady_clock::now() < deadline) {
    seen = body_of(cs[1]->call("GET", "/cluster/balances"));
    if (seen.value("total", int64_t{-1}) == total &&
        !seen["sources"]["n3"].value("available", true))
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds{50});
  }
  BOOST_CHECK_EQUAL(seen.value("total", int64_t{-1}), total);
  BOOST_CHECK_EQUAL(seen["sources"]["n3"].value("available", true), false);
  // n3 restarts: it resumes its offsets on n1 and n2 and they resume
  // theirs on n3; new deposits through n3 reach every model once.
  f.nodes[2] = f.start(2);
  BOOST_REQUIRE(f.all_joined());
  cs[2] = std::make_unique<client>(f.nodes[2]->port());
  for (auto [id, command_id, amount] : std::vector{std::move(unsure)}) {
    auto r = cs[2]->call(
        "POST", "/accounts/" + id + "/deposits",
        json{{"amount", amount}, {"command_id", command_id}}.dump());
    BOOST_CHECK_EQUAL(status_of(r), 200u);
    if (status_of(r) == 200) total += amount;
  }
  for (int i = 0; i < 15; ++i)
    BOOST_CHECK_EQUAL(deposit(*cs[2], "c" + std::to_string(i), 5), 200u);
  BOOST_CHECK(cluster_models_converge(f, 15, total));
  // The models agree with the accounts themselves.
  int64_t sum = 0;
  for (int i = 0; i < 15; ++i)
    sum += body_of(cs[0]->call("GET", "/accounts/c" + std::to_string(i)))
               .value("balance", int64_t{0});
  BOOST_CHECK_EQUAL(sum, total);
}

BOOST_AUTO_TEST_CASE(tls_members_join_and_others_are_refused) {
  auto certs = make_cluster_certificates("mnemo-cluster-tls");
  cluster_fixture f{{"--cluster.tls-certificate=" + certs + "/%N.pem",
                     "--cluster.tls-key=" + certs + "/%N.key",
                     "--cluster.tls-ca=" + certs + "/ca.pem"}};
  client c1{f.nodes[0]->port()};
  for (int i = 0; i < 6; ++i)
    BOOST_CHECK_EQUAL(
        status_of(c1.call(
            "POST", "/accounts",
            json{{"id", "s" + std::to_string(i)}, {"owner", "o"}}.dump())),
        201u);
  client c3{f.nodes[2]->port()};
  for (int i = 0; i < 6; ++i)
    BOOST_CHECK_EQUAL(
        status_of(c3.call("GET", "/accounts/s" + std::to_string(i))), 200u);
  f.nodes[2]->kill();
  f.nodes[2].reset();
  BOOST_REQUIRE(f.all_joined());
  // A certificate of another CA: the TLS handshake fails.
  auto other = f.start(2, secret, {},
                       std::vector<std::string>{
                           "--cluster.tls-certificate=" + certs + "/other.pem",
                           "--cluster.tls-key=" + certs + "/other.key",
                           "--cluster.tls-ca=" + certs + "/other.pem"});
  std::this_thread::sleep_for(std::chrono::milliseconds{1000});
  BOOST_CHECK(!has_member(body_of(c1.call("GET", "/health")), "n3"));
  other->kill();
  // No TLS at all: refused as well.
  auto plain = f.start(2, secret, {}, std::vector<std::string>{});
  std::this_thread::sleep_for(std::chrono::milliseconds{1000});
  BOOST_CHECK(!has_member(body_of(c1.call("GET", "/health")), "n3"));
  bool logged = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{15};
  while (!logged && std::chrono::steady_clock::now() < deadline) {
    for (auto& line : f.nodes[0]->drain_stdout())
      if (line.find("connect_failed") != std::string::npos &&
          line.find("member 'n3'") != std::string::npos)
        logged = true;
    if (!logged) std::this_thread::sleep_for(std::chrono::milliseconds{50});
  }
  BOOST_CHECK(logged);
  plain->kill();
  // The right certificate again: it rejoins.
  f.nodes[2] = f.start(2);
  BOOST_CHECK(f.all_joined());
}

BOOST_AUTO_TEST_SUITE_END()

// -- garbage on the cluster port ---------------------------------------------

namespace {

// A TCP connection to a loopback port, closed on destruction.
struct raw_conn {
  int fd = -1;
  explicit raw_conn(uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      fd = -1;
    }
    timeval tv{2, 0};
    if (fd >= 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~raw_conn() {
    if (fd >= 0) ::close(fd);
  }
  void send(const std::string& bytes) {
    if (fd >= 0) (void)::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }
  // Reads exactly `n` bytes, or fewer when the peer closes or is silent.
  std::string read(size_t n) {
    std::string out;
    char buf[4096];
    while (fd >= 0 && out.size() < n) {
      auto got = ::recv(fd, buf, std::min(sizeof buf, n - out.size()), 0);
      if (got <= 0) break;
      out.append(buf, static_cast<size_t>(got));
    }
    return out;
  }
};

void put_be(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i)
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// A BASP header (CAF 0.17: 32 bytes, big endian): operation, two padding
// bytes, flags, payload length, operation data, source and destination.
std::string basp_header(uint8_t op, uint8_t flags, uint32_t payload_len,
                        uint64_t op_data, uint64_t src, uint64_t dst) {
  std::string h{static_cast<char>(op), 0, 0, static_cast<char>(flags)};
  put_be(h, payload_len, 4);
  put_be(h, op_data, 8);
  put_be(h, src, 8);
  put_be(h, dst, 8);
  return h;
}

// A header that CAF's own check accepts for its operation, with a random
// payload length (mostly huge: the announced size is what hurt).
std::string plausible_header(std::mt19937_64& rng) {
  auto len = rng() % 3 == 0 ? static_cast<uint32_t>(1 + rng() % 4000)
                            : static_cast<uint32_t>(rng());
  auto any = [&] { return 1 + rng() % 1000; };
  switch (rng() % 6) {
    case 0:  // server handshake: operation data (version) set
      return basp_header(0, 0, len, any(), 0, 0);
    case 1:  // client handshake
      return basp_header(1, 0, len, 0, 0, 0);
    case 2:  // direct message
      return basp_header(2, 0, len, any(), any(), any());
    case 3:  // routed message
      return basp_header(3, 0, len, any(), any(), any());
    case 4:  // monitor message
      return basp_header(4, 0, len, 0, 0, any());
    default:  // down message
      return basp_header(5, 0, len, 0, any(), 0);
  }
}

std::string random_bytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (auto& ch : s) ch = static_cast<char>(rng() % 256);
  return s;
}

// Sends every kind of garbage to `port`: random bytes, plausible headers
// announcing any payload size (some connections held open after their
// header, as a slow sender would), and, when `forge_from` is a member's
// port (plain TCP only), client handshakes claiming that member's node id
// (read from its own server handshake) with the flag that selects a route.
void attack(uint16_t port, std::mt19937_64& rng, uint16_t forge_from) {
  for (int i = 0; i < 60; ++i) {
    raw_conn c{port};
    c.send(random_bytes(rng, 1 + rng() % 4000));
  }
  std::vector<std::unique_ptr<raw_conn>> held;
  for (int i = 0; i < 60; ++i) {
    auto c = std::make_unique<raw_conn>(port);
    c->send(plausible_header(rng) + random_bytes(rng, rng() % 64));
    if (i % 10 == 0) held.push_back(std::move(c));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds{200});
  held.clear();
  if (forge_from == 0) return;
  for (int i = 0; i < 3; ++i) {
    raw_conn member{forge_from};
    auto hdr = member.read(32);
    if (hdr.size() != 32) continue;
    uint32_t len = 0;
    for (int b = 4; b < 8; ++b)
      len = (len << 8) | static_cast<uint8_t>(hdr[static_cast<size_t>(b)]);
    auto payload = member.read(std::min<uint32_t>(len, 1 << 16));
    // The server handshake's payload starts with the node id, which is all
    // a client handshake carries (CAF 0.17: 32 bytes).
    if (payload.size() < 32) continue;
    auto nid = payload.substr(0, 32);
    raw_conn forger{port};
    constexpr uint8_t select_connection_flag = 0x02;
    forger.send(basp_header(1, select_connection_flag, 32, 0, 0, 0) + nid);
    std::this_thread::sleep_for(std::chrono::milliseconds{50});
  }
}

// The peak resident memory of a process, bytes.
size_t peak_rss(pid_t pid) {
  std::ifstream status{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

// Attacks every member's cluster port and checks that nothing of the
// cluster notices: all links stay, every member reads every account, and
// no member logs a member going away or a failed connect.
void check_garbage_changes_nothing(cluster_fixture& f, bool plain) {
  std::vector<std::unique_ptr<client>> cs;
  for (auto& n : f.nodes) cs.push_back(std::make_unique<client>(n->port()));
  for (int i = 0; i < 12; ++i)
    BOOST_REQUIRE_EQUAL(
        status_of(cs[i % 3]->call(
            "POST", "/accounts",
            json{{"id", "g" + std::to_string(i)}, {"owner", "o"}}.dump())),
        201u);
  for (auto& n : f.nodes) n->drain_stdout();
  std::mt19937_64 rng{plain ? 11u : 12u};
  for (uint16_t i = 0; i < 3; ++i)
    attack(static_cast<uint16_t>(f.base + i), rng,
           plain ? static_cast<uint16_t>(f.base + (i + 1) % 3) : 0);
  // Right after the attack and for three connection timeouts after it.
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds{6};
  size_t rounds = 0, failed_reads = 0, short_links = 0;
  do {
    ++rounds;
    for (size_t n = 0; n < 3; ++n) {
      auto h = body_of(cs[n]->call("GET", "/health"));
      if (h["cluster"]["connected"].size() != 2) ++short_links;
      BOOST_CHECK_EQUAL(h["cluster"].value("transport", ""),
                        plain ? "plain" : "tls");
      for (int i = 0; i < 12; ++i)
        if (status_of(cs[n]->call("GET", "/accounts/g" + std::to_string(i))) !=
            200)
          ++failed_reads;
    }
  } while (std::chrono::steady_clock::now() < until);
  BOOST_TEST_MESSAGE("garbage " << (plain ? "plain" : "tls") << ": " << rounds
                                << " rounds of reads");
  BOOST_CHECK_EQUAL(short_links, 0u);
  BOOST_CHECK_EQUAL(failed_reads, 0u);
  size_t refusals = 0;
  for (size_t n = 0; n < 3; ++n) {
    for (auto& line : f.nodes[n]->drain_stdout()) {
      auto j = json::parse(line, nullptr, false);
      if (!j.is_object()) continue;
      auto what = j.value("what", "");
      BOOST_CHECK_MESSAGE(what != "member_down" && what != "connect_failed",
                          "n" << n + 1 << ": " << line);
      if (what == "dropped" &&
          j.value("detail", "").find("protocol header") != std::string::npos)
        ++refusals;
    }
    // Nothing allocated what the headers announced (up to 4 GiB each).
    BOOST_CHECK_LT(peak_rss(f.nodes[n]->pid()), size_t{512} << 20);
  }
  // Plain TCP: the guard refused the headers and said so.
  if (plain) BOOST_CHECK_GT(refusals, 0u);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(bank_cluster_garbage)

BOOST_AUTO_TEST_CASE(garbage_on_plain_cluster_ports_drops_no_link) {
  cluster_fixture f;
  check_garbage_changes_nothing(f, true);
}

BOOST_AUTO_TEST_CASE(garbage_on_tls_cluster_ports_drops_no_link) {
  auto certs = make_cluster_certificates("mnemo-cluster-garbage");
  cluster_fixture f{{"--cluster.tls-certificate=" + certs + "/%N.pem",
                     "--cluster.tls-key=" + certs + "/%N.key",
                     "--cluster.tls-ca=" + certs + "/ca.pem"}};
  check_garbage_changes_nothing(f, false);
}

BOOST_AUTO_TEST_CASE(a_cluster_needs_tls_or_an_explicit_plain_opt_in) {
  auto dir = temp_dir("mnemo-cluster-no-transport");
  auto port = mnemo::test::free_port_block(1);
  std::string cmd = std::string{MNEMO_BANK_NODE} + " --data " + dir +
                    " --listen 127.0.0.1:0 --cluster.node-id=n1"
                    " --cluster.members=n1@127.0.0.1:" +
                    std::to_string(port) + " --cluster.secret=" + secret +
                    " 2>&1";
  std::string out;
  auto* pipe = ::popen(cmd.c_str(), "r");
  BOOST_REQUIRE(pipe);
  char buf[512];
  while (auto n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  auto status = ::pclose(pipe);
  BOOST_CHECK(WIFEXITED(status) && WEXITSTATUS(status) != 0);
  BOOST_CHECK_MESSAGE(
      out.find("--cluster.plain-tcp") != std::string::npos &&
          out.find("--cluster.tls-certificate") != std::string::npos,
      out);
}

BOOST_AUTO_TEST_SUITE_END()
