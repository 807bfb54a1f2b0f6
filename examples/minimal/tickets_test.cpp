// The minimal application's tests (docs/minimal-app.md), one per part,
// with mnemo's testkit: no mocks of mnemo, no sleeps.

#define BOOST_TEST_MODULE tickets
#include <boost/test/unit_test.hpp>

#include "mnemo/actors/testkit.hpp"
#include "mnemo/sagas/testkit.hpp"
#include "tickets.hpp"

using namespace tickets;
namespace mp = mnemo::persistence;

BOOST_AUTO_TEST_CASE(a_ticket_opens_closes_and_refuses_a_second_close) {
  mnemo::actors::aggregate_fixture<ticket> f;
  auto first = f.run_command("t1", open_ticket{"printer jams"});
  BOOST_REQUIRE(first.reply);
  BOOST_CHECK(first.events.size() == 1);
  BOOST_CHECK(first.state.is_open);
  BOOST_REQUIRE(f.run_command("t1", close_ticket{}).reply);
  auto again = f.run_command("t1", close_ticket{});
  BOOST_REQUIRE(!again.reply);
  BOOST_CHECK(is(again.reply.error(), ticket_errc::wrong_state));
  BOOST_CHECK(again.events.empty());
  f.restart("t1");
  BOOST_CHECK(!f.state("t1")->is_open);
}

BOOST_AUTO_TEST_CASE(the_projection_counts_open_tickets) {
  mnemo::actors::system_fixture f;
  mnemo::actors::register_types<ticket>(f.registry());
  auto p = f.spawn_projection(open_count());
  f.append("ticket-a", opened{"a"}, closed{}, reopened{});
  f.append("ticket-b", opened{"b"});
  f.append("ticket-c", opened{"c"}, closed{});
  BOOST_REQUIRE(f.caught_up(p));
  std::string open_now;
  BOOST_REQUIRE(!f.journal().read([&](mp::read_txn& txn) {
    auto v = mp::table_store::get_in(txn, "tickets.counts", "open");
    if (!v) return v.error();
    open_now = v->value_or("0");
    return mp::error{};
  }));
  BOOST_CHECK_EQUAL(open_now, "2");
  caf::anon_send_exit(p, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(a_failed_link_reopens_the_merged_ticket) {
  mnemo::sagas::saga_fixture<merge> f{merge_steps()};
  f.answer<ticket>(
      [](const std::string& id,
         const ticket::command& cmd) -> caf::expected<ticket_state> {
        if (id == "gone" && std::holds_alternative<link_ticket>(cmd))
          return make_error(ticket_errc::unknown_ticket, "no ticket 'gone'");
        return ticket_state{};
      });
  BOOST_REQUIRE(f.start("m1", {"t1", "t2"}));
  BOOST_CHECK_EQUAL(f.status("m1")->status, "completed");
  BOOST_REQUIRE(f.start("m2", {"t3", "gone"}));
  BOOST_CHECK_EQUAL(f.status("m2")->status, "compensated");
  BOOST_CHECK(f.sent_ids() == (std::vector<std::string>{
                                  "saga-merge-m1/0/do", "saga-merge-m1/1/do",
                                  "saga-merge-m2/0/do", "saga-merge-m2/1/do",
                                  "saga-merge-m2/0/undo"}));
}
