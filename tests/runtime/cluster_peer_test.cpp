// A cluster member against a rogue peer: a process that reaches the
// member's cluster port (plain TCP here) without knowing the secret. What
// it sends is refused or dropped with a log line; it cannot stop the
// member's endpoint, make it forward, or run commands.

#include <boost/test/unit_test.hpp>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "../support/free_ports.hpp"
#include "mnemo/runtime/atoms.hpp"
#include "mnemo/runtime/cluster.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/node.hpp"

using namespace mnemo;
using namespace std::chrono_literals;

namespace {

// The endpoint's message names (runtime/src/cluster.cpp).
using join_atom = caf::atom_constant<caf::atom("mn_join")>;
using remote_atom = caf::atom_constant<caf::atom("mn_remote")>;
using forward_atom = caf::atom_constant<caf::atom("mn_fwd")>;
using tick_atom = caf::atom_constant<caf::atom("mn_ctick")>;
using peers_atom = caf::atom_constant<caf::atom("mn_peers")>;

struct log_lines {
  std::mutex mtx;
  std::vector<std::string> lines;

  void add(const std::string& what, const std::string& detail) {
    std::lock_guard<std::mutex> guard{mtx};
    lines.push_back(what + ": " + detail);
  }

  bool has(const std::string& fragment) {
    std::lock_guard<std::mutex> guard{mtx};
    for (auto& l : lines)
      if (l.find(fragment) != std::string::npos) return true;
    return false;
  }
};

struct member_fixture {
  std::filesystem::path dir;
  uint16_t port = mnemo::test::free_port_block(2);
  std::shared_ptr<log_lines> log = std::make_shared<log_lines>();
  runtime::node_config cfg;
  std::unique_ptr<runtime::node> node;
  caf::actor local;  // the registry the router serves
  caf::actor router;

  explicit member_fixture(const std::string& id = "n1") {
    dir = std::filesystem::temp_directory_path() /
          ("mnemo-peer-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    cfg.data_dir = dir.string();
    cfg.durability = "nosync";
    cfg.cluster.node_id = id;
    cfg.cluster_members = "n1@127.0.0.1:" + std::to_string(port) +
                          ",n2@127.0.0.1:" + std::to_string(port + 1);
    cfg.cluster.secret = "rogue-test-secret-0123456789";
    cfg.cluster.plain_tcp = true;
    cfg.cluster.retry_ms = 50;
    auto sink = log;
    cfg.cluster_events = [sink](const std::string& w, const std::string& d) {
      sink->add(w, d);
    };
    auto n = runtime::node::start(cfg);
    BOOST_REQUIRE_MESSAGE(n,
                          (n ? std::string{} : runtime::describe(n.error())));
    node = std::move(*n);
    // A registry that answers every routed message with "ran".
    local = node->system().spawn([]() -> caf::behavior {
      return {[](runtime::route_atom, const std::string&, caf::message&) {
        return std::string{"ran"};
      }};
    });
    runtime::remote_protocol protocol;
    protocol.encode = [](const caf::message&) {
      return std::optional<runtime::bytes>{runtime::bytes{'x'}};
    };
    protocol.decode_reply = [](const caf::message&, const runtime::bytes&) {
      return caf::expected<caf::message>{caf::make_message(std::string{"ok"})};
    };
    protocol.serve =
        [](caf::event_based_actor*, const caf::actor&, const std::string&,
           const runtime::bytes&,
           std::function<void(caf::expected<runtime::bytes>)> done) {
          done(runtime::bytes{'r'});
        };
    router = node->cluster()->route("thing", local, protocol);
    node->track(router);
    node->track(local);
  }

  ~member_fixture() {
    node.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  // Whether the endpoint still answers its own node.
  bool endpoint_alive() {
    caf::scoped_actor self{node->system()};
    bool alive = false;
    self->request(node->cluster()->endpoint(), 2s, peers_atom::value)
        .receive([&](std::vector<std::string>&) { alive = true; },
                 [&](caf::error&) {});
    return alive;
  }
};

struct rogue {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;

  rogue() {
    cfg.load<caf::io::middleman>();
    cfg.set("logger.verbosity", caf::atom("quiet"));
    sys = std::make_unique<caf::actor_system>(cfg);
  }

  // Sends a request and returns the rendered error (or "ok").
  template <class... Ts>
  std::string ask(const caf::actor& ep, Ts&&... xs) {
    caf::scoped_actor self{*sys};
    std::string result = "no answer";
    self->request(ep, 3s, std::forward<Ts>(xs)...)
        .receive([&](caf::message&) { result = "ok"; },
                 [&](caf::error& err) { result = runtime::describe(err); });
    return result;
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(cluster_rogue_peer)

BOOST_AUTO_TEST_CASE(a_rogue_peer_is_refused_and_cannot_stop_the_endpoint) {
  member_fixture m;
  rogue r;
  auto ep = r.sys->middleman().remote_actor("127.0.0.1", m.port);
  BOOST_REQUIRE_MESSAGE(ep, (ep ? std::string{} : r.sys->render(ep.error())));

  // Commands without joining: refused, logged, nothing runs.
  auto answer =
      r.ask(*ep, remote_atom::value, std::string{"n2"}, std::string{"thing"},
            std::string{"a"}, runtime::bytes{'x'});
  BOOST_CHECK_MESSAGE(answer.find("join_refused") != std::string::npos, answer);
  BOOST_CHECK(m.log->has("dropped: request from 'n2' that has not joined"));

  // A join without the secret.
  answer = r.ask(*ep, join_atom::value, std::string{"n2"},
                 std::string{"any view"}, std::string{"no proof"});
  BOOST_CHECK_MESSAGE(answer.find("join_refused") != std::string::npos, answer);
  BOOST_CHECK(m.log->has("join_refused"));

  // Messages only the member's own actors may send.
  answer = r.ask(*ep, forward_atom::value, std::string{"n2"},
                 std::string{"thing"}, std::string{"a"}, runtime::bytes{'x'});
  BOOST_CHECK_MESSAGE(answer.find("routers only") != std::string::npos, answer);
  caf::anon_send(*ep, tick_atom::value);

  // Unexpected messages, as requests and as plain sends.
  answer = r.ask(*ep, std::string{"hello"}, 42);
  BOOST_CHECK_MESSAGE(answer.find("unexpected") != std::string::npos, answer);
  caf::anon_send(*ep, 1.5, std::string{"junk"});

  // Exit messages: anonymous, and from one of the rogue's actors.
  caf::anon_send_exit(*ep, caf::exit_reason::kill);
  caf::anon_send_exit(*ep, caf::exit_reason::user_shutdown);
  {
    caf::scoped_actor self{*r.sys};
    self->send_exit(*ep, caf::exit_reason::user_shutdown);
  }
  std::this_thread::sleep_for(300ms);
  BOOST_CHECK(m.endpoint_alive());
  BOOST_CHECK(m.log->has("unexpected"));

  // The member still routes its own commands.
  caf::scoped_actor self{m.node->system()};
  std::string ran;
  self->request(m.router, 2s, runtime::route_atom::value, std::string{"a"},
                caf::make_message(std::string{"go"}))
      .receive([&](caf::message& msg) { ran = to_string(msg); },
               [&](caf::error& err) { ran = runtime::describe(err); });
  // "a" is owned by n1 or n2; either it ran here or n2 is unavailable.
  BOOST_CHECK_MESSAGE(ran.find("ran") != std::string::npos ||
                          ran.find("owner_unavailable") != std::string::npos,
                      ran);
}

// A join offers the view's fingerprint (member ids and shard count) or,
// from a build before 2026-12-07, the one that also named every address:
// both join, so that a rolling upgrade does; another view is refused.
BOOST_AUTO_TEST_CASE(joins_take_the_current_and_the_legacy_view) {
  member_fixture m{"n2"};
  rogue r;
  auto ep = r.sys->middleman().remote_actor("127.0.0.1", m.port + 1);
  BOOST_REQUIRE_MESSAGE(ep, (ep ? std::string{} : r.sys->render(ep.error())));
  auto& view = m.node->cluster()->view();
  auto current = view.fingerprint();
  std::string legacy = "shards=" + std::to_string(view.shards());
  for (auto& x : view.members()) legacy += ";" + x.to_string();
  auto join = [&](const std::string& fp) {
    // HMAC-SHA256(secret, "join|from|to|view"), lower-case hex.
    std::string text = "join|n1|n2|" + fp;
    auto& key = m.cfg.cluster.secret;
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(text.data()), text.size(), out,
         &len);
    std::string proof;
    for (unsigned int i = 0; i < len; ++i) {
      proof.push_back("0123456789abcdef"[out[i] >> 4]);
      proof.push_back("0123456789abcdef"[out[i] & 0xf]);
    }
    caf::scoped_actor self{*r.sys};
    std::string result = "no answer";
    self->request(*ep, 3s, join_atom::value, std::string{"n1"}, fp, proof)
        .receive([&](std::string& who, std::string&) { result = who; },
                 [&](caf::error& err) { result = runtime::describe(err); });
    return result;
  };
  BOOST_CHECK_EQUAL(current.find("127.0.0.1"), std::string::npos);
  BOOST_CHECK_EQUAL(join(current), "n2");
  BOOST_CHECK_EQUAL(join(legacy), "n2");
  auto elsewhere = legacy;
  elsewhere.replace(elsewhere.find(std::to_string(m.port)),
                    std::to_string(m.port).size(), "1");
  auto refused = join(elsewhere);
  BOOST_CHECK_MESSAGE(refused.find("join_refused") != std::string::npos,
                      refused);
  auto other = current;
  other.replace(0, other.find(';'), "shards=7");
  refused = join(other);
  BOOST_CHECK_MESSAGE(refused.find("join_refused") != std::string::npos,
                      refused);
}

BOOST_AUTO_TEST_SUITE_END()
