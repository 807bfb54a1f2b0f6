// The entity registry with aggregates: activation on first use, routing to
// the single live instance, passivation by idle time and by LRU limit, and
// no second instance while the first is still finishing.

#include <boost/test/unit_test.hpp>

#include "../support/wallet.hpp"
#include "mnemo/actors/testkit.hpp"
#include "mnemo/runtime/cluster_view.hpp"
#include "mnemo/runtime/entity_registry.hpp"

using namespace mnemo;
using namespace wallet_model;
using fixture = actors::aggregate_fixture<wallet>;

namespace {

struct registry_fixture : fixture {
  caf::actor registry;

  explicit registry_fixture(runtime::registry_options opts) {
    auto ctx = context();
    registry = runtime::spawn_entity_registry(
        system(),
        [ctx](caf::actor_system& sys, const std::string& id) {
          return sys.spawn<actors::aggregate_actor<wallet>>(ctx, id);
        },
        opts);
    run();
  }

  ~registry_fixture() {
    caf::anon_send_exit(registry, caf::exit_reason::user_shutdown);
    run();
  }

  static caf::message command(wallet::command cmd) {
    return caf::make_message(actors::command_atom::value, std::string{},
                             std::move(cmd));
  }

  caf::expected<wallet_reply> route(const std::string& id,
                                    wallet::command cmd) {
    return request<wallet_reply>(registry, runtime::route_atom::value, id,
                                 command(std::move(cmd)));
  }

  std::pair<size_t, size_t> stats() {
    auto res = std::make_shared<std::pair<size_t, size_t>>();
    auto reg = registry;
    system().spawn([=](caf::event_based_actor* self) {
      self->request(reg, caf::infinite, runtime::stats_atom::value)
          .then([=](size_t active, size_t passivations, size_t) {
            *res = {active, passivations};
          });
    });
    run();
    return *res;
  }
};

runtime::registry_options options(size_t max_active,
                                  std::chrono::milliseconds idle) {
  runtime::registry_options opts;
  opts.max_active = max_active;
  opts.idle_timeout = idle;
  return opts;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(entity_registry)

BOOST_AUTO_TEST_CASE(first_use_activates_and_later_commands_reach_it) {
  registry_fixture f{options(10, std::chrono::minutes{5})};
  BOOST_REQUIRE(f.route("a1", open_wallet{"alice"}));
  BOOST_CHECK_EQUAL(f.route("a1", deposit{5})->balance, 5);
  BOOST_CHECK_EQUAL(f.route("a1", deposit{6})->balance, 11);
  BOOST_REQUIRE(f.route("a2", open_wallet{"bob"}));
  auto [active, passivations] = f.stats();
  BOOST_CHECK_EQUAL(active, 2u);
  BOOST_CHECK_EQUAL(passivations, 0u);
  // Rejections travel back through the registry unchanged.
  auto over = f.route("a2", withdraw{1});
  BOOST_REQUIRE(!over);
  BOOST_CHECK_EQUAL(over.error().category(), caf::atom("wallet"));
}

BOOST_AUTO_TEST_CASE(idle_entities_passivate_and_come_back_transparently) {
  registry_fixture f{options(10, std::chrono::seconds{60})};
  BOOST_REQUIRE(f.route("a1", open_wallet{"alice"}));
  BOOST_REQUIRE(f.route("a1", deposit{40}));
  f.scheduler().advance_time(std::chrono::seconds{30});
  f.run();
  BOOST_CHECK_EQUAL(f.stats().first, 1u);
  // Virtual time: past the idle timeout plus one check period.
  f.scheduler().advance_time(std::chrono::seconds{15});
  f.run();
  f.scheduler().advance_time(std::chrono::seconds{15});
  f.run();
  f.scheduler().advance_time(std::chrono::seconds{15});
  f.run();
  auto [active, passivations] = f.stats();
  BOOST_CHECK_EQUAL(active, 0u);
  BOOST_CHECK_EQUAL(passivations, 1u);
  BOOST_CHECK_EQUAL(f.route("a1", deposit{2})->balance, 42);
  BOOST_CHECK_EQUAL(f.stats().first, 1u);
}

BOOST_AUTO_TEST_CASE(active_limit_passivates_least_recently_used) {
  registry_fixture f{options(2, std::chrono::minutes{5})};
  BOOST_REQUIRE(f.route("a1", open_wallet{"alice"}));
  BOOST_REQUIRE(f.route("a2", open_wallet{"bob"}));
  BOOST_REQUIRE(f.route("a1", deposit{1}));  // a2 is now least recent
  BOOST_REQUIRE(f.route("a3", open_wallet{"carol"}));
  auto [active, passivations] = f.stats();
  BOOST_CHECK_EQUAL(active, 2u);
  BOOST_CHECK_EQUAL(passivations, 1u);
  // a1 stayed active; a2 comes back on demand with its state.
  BOOST_CHECK_EQUAL(f.route("a1", deposit{1})->balance, 2);
  BOOST_CHECK_EQUAL(f.route("a2", deposit{3})->balance, 3);
  BOOST_CHECK_EQUAL(f.stats().second, 2u);
}

BOOST_AUTO_TEST_CASE(evicting_a_shard_passivates_its_entities_only) {
  registry_fixture f{options(100, std::chrono::minutes{5})};
  constexpr uint32_t shards = 4;
  auto shard = runtime::entity_shard(wallet::type_name, "a1", shards);
  size_t in_shard = 0;
  for (int i = 1; i <= 12; ++i) {
    auto id = "a" + std::to_string(i);
    BOOST_REQUIRE(f.route(id, open_wallet{"x"}));
    BOOST_REQUIRE(f.route(id, deposit{i}));
    if (runtime::entity_shard(wallet::type_name, id, shards) == shard)
      ++in_shard;
  }
  BOOST_REQUIRE_LT(in_shard, 12u);
  auto evicted =
      f.request<size_t>(f.registry, runtime::evict_atom::value,
                        std::string{wallet::type_name}, shard, shards);
  BOOST_REQUIRE(evicted);
  BOOST_CHECK_EQUAL(*evicted, in_shard);
  auto [active, passivations] = f.stats();
  BOOST_CHECK_EQUAL(active, 12u - in_shard);
  BOOST_CHECK_EQUAL(passivations, in_shard);
  // An evicted entity comes back with its state from the journal.
  BOOST_CHECK_EQUAL(f.route("a1", deposit{10})->balance, 11);
}

BOOST_AUTO_TEST_CASE(no_second_instance_while_the_first_finishes) {
  registry_fixture f{options(1, std::chrono::minutes{5})};
  BOOST_REQUIRE(f.route("a1", open_wallet{"alice"}));
  // All sent before anything runs: a1's deposits are in flight when a2
  // pushes a1 out, and the next a1 command must wait for the old instance
  // to finish instead of racing it with a second writer.
  auto results = std::make_shared<std::vector<caf::expected<wallet_reply>>>();
  auto reg = f.registry;
  std::vector<std::pair<std::string, wallet::command>> cmds{
      {"a1", deposit{10}}, {"a1", deposit{20}}, {"a2", open_wallet{"bob"}},
      {"a1", deposit{30}}, {"a2", deposit{1}},  {"a1", deposit{40}}};
  results->resize(cmds.size(),
                  caf::expected<wallet_reply>{caf::sec::request_timeout});
  for (size_t i = 0; i < cmds.size(); ++i) {
    auto msg = registry_fixture::command(cmds[i].second);
    auto id = cmds[i].first;
    f.system().spawn([=](caf::event_based_actor* self) {
      self->request(reg, caf::infinite, runtime::route_atom::value, id, msg)
          .then([=](wallet_reply& r) { (*results)[i] = r; },
                [=](caf::error& e) { (*results)[i] = e; });
    });
  }
  f.run();
  for (auto& r : *results)
    BOOST_CHECK_MESSAGE(r, (r ? "ok" : runtime::describe(r.error())));
  BOOST_CHECK_EQUAL(f.route("a1", deposit{0 + 1})->balance, 101);
  BOOST_CHECK_EQUAL(f.events("a1")->size(), 6u);
  BOOST_CHECK_GE(f.stats().second, 2u);
}

BOOST_AUTO_TEST_SUITE_END()
