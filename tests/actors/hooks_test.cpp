// Aggregate hooks and handler failures, on a tiny counter aggregate.

#include <boost/test/unit_test.hpp>

#include "mnemo/actors/testkit.hpp"

using namespace mnemo;

namespace counter_model {

struct add {
  int64_t n = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, add& x) {
  return f(caf::meta::type_name("add"), x.n);
}

struct added {
  int64_t n = 0;
  MSGPACK_DEFINE_MAP(n)
};

struct count {
  int64_t total = 0;
  MSGPACK_DEFINE_MAP(total)
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, count& x) {
  return f(caf::meta::type_name("count"), x.total);
}

/// Counts recoveries; throws from `handle` for negative amounts.
struct counter {
  using state = count;
  using command = std::variant<add>;
  using event = std::variant<added>;
  using reply = count;
  static constexpr const char* type_name = "counter";
  static inline int recoveries = 0;
  static inline int64_t recovered_total = -1;

  static void register_types(persistence::event_registry& types) {
    types.add<added>("counter.added");
    types.add<count>("counter.state");
  }
  static actors::effect<counter> handle(const state&, const command& cmd) {
    auto n = std::get<add>(cmd).n;
    if (n < 0) throw std::invalid_argument("negative amount");
    return actors::effect<counter>::persist(added{n},
                                            [](const state& s) { return s; });
  }
  static state apply(state s, const event& ev) {
    s.total += std::get<added>(ev).n;
    return s;
  }
  static void on_recovered(const state& s) {
    ++recoveries;
    recovered_total = s.total;
  }
};

}  // namespace counter_model

using counter_model::counter;

BOOST_AUTO_TEST_SUITE(aggregate_hooks)

BOOST_AUTO_TEST_CASE(recovery_completed_hook_sees_the_recovered_state) {
  actors::aggregate_fixture<counter> f;
  counter::recoveries = 0;
  f.given("c1", {counter_model::added{5}, counter_model::added{7}});
  BOOST_CHECK_EQUAL(f.when("c1", counter_model::add{1})->total, 13);
  BOOST_CHECK_EQUAL(counter::recoveries, 1);
  BOOST_CHECK_EQUAL(counter::recovered_total, 12);
  f.restart("c1");
  BOOST_CHECK_EQUAL(counter::recoveries, 2);
  BOOST_CHECK_EQUAL(counter::recovered_total, 13);
}

BOOST_AUTO_TEST_CASE(throwing_handler_answers_the_caller_and_stops) {
  actors::aggregate_fixture<counter> f;
  BOOST_REQUIRE(f.when("c1", counter_model::add{2}));
  auto res = f.when("c1", counter_model::add{-1});
  BOOST_REQUIRE(!res);
  BOOST_CHECK(runtime::is(res.error(), runtime::errc::handler_failed));
  auto text = runtime::describe(res.error());
  BOOST_CHECK_MESSAGE(text.find("negative amount") != std::string::npos, text);
  BOOST_CHECK_MESSAGE(text.find("counter-c1") != std::string::npos, text);
  // The instance is gone; a new one recovers and nothing was persisted.
  f.restart("c1");
  BOOST_CHECK_EQUAL(f.state("c1")->total, 2);
  BOOST_CHECK_EQUAL(f.events("c1")->size(), 1u);
}

BOOST_AUTO_TEST_SUITE_END()
