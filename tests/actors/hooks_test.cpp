// Aggregate hooks and handler failures, on a tiny counter aggregate.

#include <boost/test/unit_test.hpp>

#include "counter.hpp"
#include "mnemo/actors/testkit.hpp"

using namespace mnemo;

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
