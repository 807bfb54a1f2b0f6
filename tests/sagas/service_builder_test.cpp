// The service builder (mnemo/sagas/service_builder.hpp) on a real node,
// with types of its own: an aggregate, a saga commanding it, a projection
// following it; and the unfinished sagas a restarted node resumes.

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <variant>

#include <caf/scoped_actor.hpp>

#include "mnemo/actors/testkit.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "mnemo/runtime/message.hpp"
#include "mnemo/runtime/node.hpp"
#include "mnemo/sagas/service_builder.hpp"

using namespace mnemo;
using namespace std::chrono_literals;

namespace vaults {

// clang-format off
struct put { int64_t amount = 0; MNEMO_MESSAGE(put, amount) };
struct was_put { int64_t amount = 0; MNEMO_MESSAGE(was_put, amount) };
struct vault_state { int64_t total = 0; MNEMO_MESSAGE(vault_state, total)
  void apply(const was_put& e) { total += e.amount; } };
// clang-format on

struct vault {
  using state = vault_state;
  using command = std::variant<put>;
  using event = std::variant<was_put>;
  using reply = vault_state;
  using effect = actors::effect<vault>;
  static constexpr const char* type_name = "vault";
  static constexpr const char* event_names[] = {"vault.put"};
  static reply reply_of(const state& s) { return s; }
  static effect decide(const state& s, const put& c) {
    if (c.amount == 0) return effect::respond(s);  // a query
    return effect::persist(was_put{c.amount});
  }
};

struct payout_data {
  std::string vault;
  int64_t amount = 0;
  MNEMO_MESSAGE(payout_data, vault, amount)
};
struct payout {
  using data = payout_data;
  static constexpr const char* type_name = "payout";
};

// While set, the step's target is "unavailable" (a transient error): the
// saga retries every 50 ms.
std::atomic<bool> vault_down{false};

sagas::definition<payout_data> payout_steps() {
  auto send = sagas::command<vault, payout_data>(
      [](const payout_data& d) { return d.vault; },
      [](const payout_data& d) { return vault::command{put{d.amount}}; });
  sagas::step<payout_data> pay;
  pay.name = "pay";
  pay.action = [send](caf::event_based_actor* self, const sagas::targets& to,
                      const payout_data& d, const std::string& id,
                      std::function<void(caf::error)> done) {
    if (vault_down)
      return done(runtime::make_error(runtime::errc::owner_unavailable,
                                      "the vault is down"));
    send(self, to, d, id, std::move(done));
  };
  pay.retry.max_attempts = 100000;
  pay.retry.backoff.min_backoff = 50ms;
  pay.retry.backoff.max_backoff = 50ms;
  pay.retry.backoff.jitter = 0;
  sagas::definition<payout_data> def;
  def.steps = {pay};
  return def;
}

// Counts the vault's events in key "n" of table "vault.count".
actors::projection_spec count_puts() {
  namespace mp = persistence;
  actors::projection_spec spec;
  spec.name = "vault.count";
  spec.filter.event_types = {"vault.put"};
  spec.apply = [](mp::write_txn& txn, const mp::event_envelope&) -> mp::error {
    auto now = mp::table_store::get_in(txn, "vault.count", "n");
    if (!now) return now.error();
    auto n = *now ? std::stoll(**now) : 0;
    return mp::table_store::put_in(txn, "vault.count", "n",
                                   std::to_string(n + 1));
  };
  return spec;
}

struct built_node {
  std::unique_ptr<runtime::node> node;
  sagas::service svc;
};

built_node start(const actors::temp_directory& dir, runtime::node_config& cfg) {
  cfg.data_dir = (dir.path() / "data").string();
  cfg.durability = "nosync";
  auto started = runtime::node::start(cfg);
  BOOST_REQUIRE(started);
  sagas::service_builder b{**started};
  auto vaults = b.aggregate<vault>();
  auto payouts = b.saga<payout>(payout_steps());
  b.projection(count_puts());
  auto svc = b.build();
  BOOST_REQUIRE_MESSAGE(svc, (svc ? "" : runtime::describe(svc.error())));
  BOOST_CHECK(svc->aggregate<vault>() == vaults);
  BOOST_CHECK(svc->saga<payout>() == payouts);
  return {std::move(*started), std::move(*svc)};
}

// Polls saga `id` of `n` until `want` or 15 s.
std::string wait_status(built_node& n, const std::string& id,
                        const std::string& want) {
  caf::scoped_actor self{n.node->system()};
  std::string last;
  for (int i = 0; i < 300 && last != want; ++i) {
    if (i > 0) std::this_thread::sleep_for(50ms);
    self->request(n.svc.saga<payout>(), 5s, runtime::route_atom::value, id,
                  caf::make_message(sagas::status_atom::value))
        .receive([&](sagas::saga_status& s) { last = s.status; },
                 [&](caf::error& e) { last = runtime::describe(e); });
  }
  return last;
}

caf::expected<vault_state> vault_of(built_node& n, const std::string& id) {
  caf::scoped_actor self{n.node->system()};
  caf::expected<vault_state> out{
      runtime::make_error(runtime::errc::not_found, "no answer")};
  self->request(n.svc.aggregate<vault>(), 5s, runtime::route_atom::value, id,
                actors::command_message<vault>(put{0}))
      .receive([&](vault_state& s) { out = s; },
               [&](caf::error& e) { out = std::move(e); });
  return out;
}

}  // namespace vaults

using namespace vaults;

BOOST_AUTO_TEST_SUITE(service_builder)

// One builder wires the aggregate, the saga (whose target is the
// aggregate added before it) and the projection, with the node's settings.
BOOST_AUTO_TEST_CASE(it_wires_aggregates_sagas_and_projections) {
  actors::temp_directory dir;
  runtime::node_config cfg;
  vault_down = false;
  auto n = start(dir, cfg);
  BOOST_CHECK(
      (n.svc.projection_names == std::vector<std::string>{"vault.count"}));
  BOOST_REQUIRE(n.svc.projections);
  caf::scoped_actor self{n.node->system()};
  std::string started;
  self->request(
          n.svc.saga<payout>(), 5s, runtime::route_atom::value,
          std::string{"p1"},
          caf::make_message(sagas::start_atom::value, payout_data{"v1", 7}))
      .receive([&](sagas::saga_status& s) { started = s.status; },
               [&](caf::error& e) { started = runtime::describe(e); });
  BOOST_CHECK_EQUAL(started, "running");
  BOOST_CHECK_EQUAL(wait_status(n, "p1", "completed"), "completed");
  auto v = vault_of(n, "v1");
  BOOST_REQUIRE(v);
  BOOST_CHECK_EQUAL(v->total, 7);
  // The projection follows the vault's event.
  std::string counted;
  for (int i = 0; i < 300 && counted != "1"; ++i) {
    std::this_thread::sleep_for(20ms);
    auto err = n.node->journal().read([&](persistence::read_txn& txn) {
      auto got = persistence::table_store::get_in(txn, "vault.count", "n");
      if (!got) return got.error();
      counted = got->value_or("");
      return persistence::error{};
    });
    BOOST_REQUIRE(!err);
  }
  BOOST_CHECK_EQUAL(counted, "1");
}

// A saga left unfinished when its node stopped is resumed by build() on
// the next start: nobody asks for it, yet it completes.
BOOST_AUTO_TEST_CASE(build_resumes_unfinished_sagas) {
  actors::temp_directory dir;
  {
    runtime::node_config cfg;
    vault_down = true;
    auto n = start(dir, cfg);
    caf::scoped_actor self{n.node->system()};
    self->request(
            n.svc.saga<payout>(), 5s, runtime::route_atom::value,
            std::string{"p2"},
            caf::make_message(sagas::start_atom::value, payout_data{"v2", 5}))
        .receive([](sagas::saga_status&) {},
                 [](caf::error& e) { BOOST_FAIL(runtime::describe(e)); });
    std::this_thread::sleep_for(200ms);  // a few failed attempts
    BOOST_CHECK_EQUAL(wait_status(n, "p2", "running"), "running");
  }
  vault_down = false;
  runtime::node_config cfg;
  auto n = start(dir, cfg);
  // Not a status request (which would wake the saga itself): the vault's
  // state, polled until the resumed saga's command arrived.
  int64_t total = 0;
  for (int i = 0; i < 300 && total != 5; ++i) {
    std::this_thread::sleep_for(50ms);
    auto v = vault_of(n, "v2");
    BOOST_REQUIRE(v);
    total = v->total;
  }
  BOOST_CHECK_EQUAL(total, 5);
  BOOST_CHECK_EQUAL(wait_status(n, "p2", "completed"), "completed");
}

BOOST_AUTO_TEST_SUITE_END()
