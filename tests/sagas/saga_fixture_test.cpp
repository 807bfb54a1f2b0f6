// The saga testkit (mnemo/sagas/testkit.hpp) with a trip saga of its own:
// given the aggregates' answers and the passing of virtual time, the
// commands the saga sends, their order (compensations included) and its
// final status.

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <variant>

#include "mnemo/runtime/error_enum.hpp"
#include "mnemo/runtime/message.hpp"
#include "mnemo/sagas/testkit.hpp"

using namespace mnemo;
using namespace std::chrono_literals;

namespace trips {

MNEMO_ERROR_ENUM(trip_errc, "trips", none, sold_out)

struct book {
  std::string who;
  MNEMO_MESSAGE(book, who)
};
struct cancel {
  MNEMO_EMPTY_MESSAGE(cancel)
};
struct booking {
  std::string ref;
  MNEMO_MESSAGE(booking, ref)
};
// The aggregates the saga commands: only their types matter here.
struct flights {
  static constexpr const char* type_name = "flights";
  using command = std::variant<book, cancel>;
  using reply = booking;
};
struct hotels {
  static constexpr const char* type_name = "hotels";
  using command = std::variant<book, cancel>;
  using reply = booking;
};

struct trip_data {
  std::string who;
  MNEMO_MESSAGE(trip_data, who)
};
struct trip {
  using data = trip_data;
  static constexpr const char* type_name = "trip";
};

// Fly, then stay; each undone by a cancel. `stay_timeout`: the hotel's
// time (0: none).
sagas::definition<trip_data> steps(std::chrono::milliseconds stay_timeout) {
  auto who = [](const trip_data& d) { return d.who; };
  auto booking_of = [](const trip_data& d) { return book{d.who}; };
  sagas::step<trip_data> fly;
  fly.name = "fly";
  fly.action = sagas::command<flights, trip_data>(
      who, [=](const trip_data& d) { return flights::command{booking_of(d)}; });
  fly.compensation = sagas::command<flights, trip_data>(
      who, [](const trip_data&) { return flights::command{cancel{}}; });
  sagas::step<trip_data> stay;
  stay.name = "stay";
  stay.action = sagas::command<hotels, trip_data>(
      who, [=](const trip_data& d) { return hotels::command{booking_of(d)}; });
  stay.compensation = sagas::command<hotels, trip_data>(
      who, [](const trip_data&) { return hotels::command{cancel{}}; });
  stay.retry.backoff.min_backoff = 100ms;
  stay.retry.backoff.max_backoff = 100ms;
  stay.retry.backoff.jitter = 0;
  stay.retry.max_attempts = 100;
  stay.timeout = stay_timeout;
  sagas::definition<trip_data> def;
  def.steps = {fly, stay};
  return def;
}

using answer_fn = std::function<caf::expected<booking>(
    const std::string&, const std::variant<book, cancel>&)>;

// A hotel that is away (a transient error) for its first `refusals`
// commands, then books.
answer_fn away_then_book(int refusals) {
  auto left = std::make_shared<int>(refusals);
  return [left](const std::string&, const auto&) -> caf::expected<booking> {
    if ((*left)-- > 0)
      return runtime::make_error(runtime::errc::owner_unavailable, "away");
    return booking{"room 7"};
  };
}

// A hotel that is always away.
answer_fn always_away() {
  return [](const std::string&, const auto&) -> caf::expected<booking> {
    return runtime::make_error(runtime::errc::owner_unavailable, "away");
  };
}

}  // namespace trips

// Event-decided steps (step::await): a venue that confirms a booking later.
namespace trips {

struct confirmed {
  std::string ref;
  MNEMO_MESSAGE(confirmed, ref)
};
struct declined {
  std::string why;
  MNEMO_MESSAGE(declined, why)
};
struct noted {
  MNEMO_EMPTY_MESSAGE(noted)
};
// A hotel that confirms a booking later, with an event.
struct venues {
  static constexpr const char* type_name = "venues";
  using command = std::variant<book, cancel>;
  using reply = booking;
  using event = std::variant<confirmed, declined, noted>;
};

// Fly, then a venue booking that its event decides (within `wait`).
sagas::definition<trip_data> event_steps(std::chrono::milliseconds wait) {
  auto def = steps(0ms);
  sagas::step<trip_data> venue;
  venue.name = "venue";
  auto who = [](const trip_data& d) { return d.who; };
  venue.action = sagas::command<venues, trip_data>(
      who, [](const trip_data& d) { return venues::command{book{d.who}}; });
  venue.compensation = sagas::command<venues, trip_data>(
      who, [](const trip_data&) { return venues::command{cancel{}}; });
  venue.await = sagas::await_event<venues, trip_data>(
      [](const venues::event& ev,
         const trip_data&) -> std::optional<caf::error> {
        if (std::holds_alternative<confirmed>(ev)) return caf::error{};
        if (auto* d = std::get_if<declined>(&ev))
          return make_error(trip_errc::sold_out, d->why);
        return std::nullopt;  // not about the booking
      });
  venue.timeout = wait;
  def.steps = {def.steps[0], venue};
  return def;
}

void register_venue_events(sagas::saga_fixture<trip>& f) {
  f.registry().add<confirmed>("venues.confirmed");
  f.registry().add<declined>("venues.declined");
  f.registry().add<noted>("venues.noted");
}

}  // namespace trips

using namespace trips;

BOOST_AUTO_TEST_SUITE(saga_fixture)

BOOST_AUTO_TEST_CASE(a_saga_whose_steps_succeed_completes) {
  sagas::saga_fixture<trip> f{steps(0ms)};
  f.answer<flights>();
  f.answer<hotels>();
  auto started = f.start("t1", {"ann"});
  BOOST_REQUIRE(started);
  BOOST_CHECK_EQUAL(f.status("t1")->status, "completed");
  BOOST_CHECK((f.sent_ids() == std::vector<std::string>{"saga-trip-t1/0/do",
                                                        "saga-trip-t1/1/do"}));
  BOOST_REQUIRE_EQUAL(f.sent().size(), 2u);
  BOOST_CHECK_EQUAL(f.sent()[0].aggregate, "flights");
  BOOST_CHECK_EQUAL(f.sent()[1].aggregate, "hotels");
  BOOST_CHECK_EQUAL(f.sent()[1].entity, "ann");
  BOOST_CHECK_MESSAGE(f.sent()[1].command.find("ann") != std::string::npos,
                      f.sent()[1].command);
}

// A final rejection of the second step compensates the first: the cancel
// of the flight is the last command, and the saga is compensated.
BOOST_AUTO_TEST_CASE(a_rejected_step_compensates_the_ones_before_it) {
  sagas::saga_fixture<trip> f{steps(0ms)};
  f.answer<flights>();
  f.answer<hotels>(answer_fn{
      [](const std::string&, const auto& cmd) -> caf::expected<booking> {
        if (std::holds_alternative<book>(cmd))
          return make_error(trip_errc::sold_out, "no rooms");
        return booking{};
      }});
  BOOST_REQUIRE(f.start("t2", {"bob"}));
  auto st = f.status("t2");
  BOOST_REQUIRE(st);
  BOOST_CHECK_EQUAL(st->status, "compensated");
  BOOST_CHECK_MESSAGE(st->error.find("no rooms") != std::string::npos,
                      st->error);
  BOOST_CHECK((f.sent_ids() == std::vector<std::string>{
                                   "saga-trip-t2/0/do", "saga-trip-t2/1/do",
                                   "saga-trip-t2/0/undo"}));
  BOOST_CHECK_MESSAGE(
      f.sent().back().command.find("cancel") != std::string::npos,
      f.sent().back().command);
}

// Transient errors are retried on virtual time: the hotel is unavailable
// twice, then books; the retries are 100 ms apart and nothing happens
// before they are due.
BOOST_AUTO_TEST_CASE(transient_errors_are_retried_in_virtual_time) {
  sagas::saga_fixture<trip> f{steps(0ms)};
  f.answer<flights>();
  f.answer<hotels>(away_then_book(2));
  BOOST_REQUIRE(f.start("t3", {"cy"}));
  BOOST_CHECK_EQUAL(f.status("t3")->status, "running");
  BOOST_CHECK_EQUAL(f.sent().size(), 2u);
  f.advance(99ms);
  BOOST_CHECK_EQUAL(f.sent().size(), 2u);
  f.advance(1ms);
  BOOST_CHECK_EQUAL(f.sent().size(), 3u);
  f.advance(100ms);
  BOOST_CHECK_EQUAL(f.status("t3")->status, "completed");
  // The same command id on every attempt: the aggregate applies it once.
  BOOST_CHECK((f.sent_ids() == std::vector<std::string>{
                                   "saga-trip-t3/0/do", "saga-trip-t3/1/do",
                                   "saga-trip-t3/1/do", "saga-trip-t3/1/do"}));
}

// A step's timeout on the fixture's wall clock: the hotel never answers
// but with a transient error; after 1 s no new attempt starts, and the
// flight is cancelled.
BOOST_AUTO_TEST_CASE(a_step_timeout_passes_in_virtual_time) {
  sagas::saga_fixture<trip> f{steps(1s)};
  f.answer<flights>();
  f.answer<hotels>(always_away());
  BOOST_REQUIRE(f.start("t4", {"dee"}));
  for (int i = 0; i < 9; ++i) f.advance(100ms);
  BOOST_CHECK_EQUAL(f.status("t4")->status, "running");
  for (int i = 0; i < 3; ++i) f.advance(100ms);
  BOOST_CHECK_EQUAL(f.status("t4")->status, "compensated");
  BOOST_CHECK_EQUAL(f.sent_ids().back(), "saga-trip-t4/0/undo");
}

// Due times far ahead: a step whose time ends in ten days waits through
// nine of them (retrying) and gives up on the tenth; one that ends in 400
// years (past what a CAF timer can hold in ns) does not give up at once.
BOOST_AUTO_TEST_CASE(due_times_days_and_centuries_ahead) {
  auto def = steps(0ms);
  auto days = std::make_shared<int64_t>(0);
  def.steps[1].due_at = [days](const trip_data&) { return *days; };
  sagas::saga_fixture<trip> f{def};
  f.answer<flights>();
  f.answer<hotels>(answer_fn{
      [](const std::string&, const auto& cmd) -> caf::expected<booking> {
        if (std::holds_alternative<book>(cmd))
          return runtime::make_error(runtime::errc::owner_unavailable, "away");
        return booking{};
      }});
  constexpr int64_t day = 86'400'000;
  *days = f.wall_ms() + 10 * day;
  BOOST_REQUIRE(f.start("ten-days", {"fay"}));
  *days = f.wall_ms() + 400 * 365 * day;
  BOOST_REQUIRE(f.start("centuries", {"gus"}));
  f.advance(1s);
  BOOST_CHECK_EQUAL(f.status("centuries")->status, "running");
  for (int i = 0; i < 9; ++i) f.advance(std::chrono::hours{24});
  BOOST_CHECK_EQUAL(f.status("ten-days")->status, "running");
  for (int i = 0; i < 2; ++i) f.advance(std::chrono::hours{24});
  BOOST_CHECK_EQUAL(f.status("ten-days")->status, "compensated");
  BOOST_CHECK_EQUAL(f.status("centuries")->status, "running");
}

// A long saga snapshots its progress (here every 3 events) and recovers
// from the latest snapshot plus the events after it: restarted between
// two retries, it goes on with the attempt it stood at, and the hotel gets
// exactly the attempts the script asked for.
BOOST_AUTO_TEST_CASE(a_saga_recovers_from_its_snapshot) {
  sagas::saga_fixture<trip> f{steps(0ms)};
  f.snapshot_every = 3;
  f.answer<flights>();
  f.answer<hotels>(away_then_book(10));
  BOOST_REQUIRE(f.start("t5", {"eve"}));
  for (int i = 0; i < 5; ++i) f.advance(100ms);
  auto stream = sagas::saga_stream<trip>("t5");
  auto snap = f.journal().snapshots().load(
      stream, persistence::snapshot_criteria::latest());
  BOOST_REQUIRE(snap && *snap);
  BOOST_CHECK_EQUAL((*snap)->type, sagas::saga_snapshot_type);
  auto head = f.journal().head_of(stream);
  BOOST_REQUIRE(head);
  BOOST_TEST_MESSAGE("snapshot at " << (*snap)->meta.sequence << " of "
                                    << head->highest_sequence << " events");
  BOOST_CHECK_GE((*snap)->meta.sequence, 6u);
  BOOST_CHECK_EQUAL((*snap)->meta.sequence % 3, 0u);
  auto before = f.status("t5");
  BOOST_REQUIRE(before);
  f.restart_sagas();
  // The events the snapshot covers go: only the snapshot can tell the
  // recovered saga where it stood.
  BOOST_REQUIRE(!f.journal().delete_events_to(stream, (*snap)->meta.sequence));
  auto after = f.status("t5");
  BOOST_REQUIRE(after);
  BOOST_CHECK_EQUAL(after->status, "running");
  BOOST_CHECK_EQUAL(after->step, before->step);
  BOOST_CHECK_EQUAL(after->attempt, before->attempt);
  for (int i = 0; i < 10; ++i) f.advance(100ms);
  BOOST_CHECK_EQUAL(f.status("t5")->status, "completed");
  auto ids = f.sent_ids();
  BOOST_CHECK_EQUAL(
      std::count(ids.begin(), ids.end(), std::string{"saga-trip-t5/1/do"}), 11);
}

// A saga recovers its stream in chunks (here of 2 events), one message to
// itself per chunk: requests that arrive meanwhile wait in its stash, up
// to its limit, and are answered once it has recovered; past the limit
// they get stash_overflow at once.
BOOST_AUTO_TEST_CASE(a_recovering_saga_stashes_requests_up_to_its_limit) {
  sagas::saga_fixture<trip> f{steps(0ms)};
  f.recovery_chunk = 2;
  f.stash_limit = 2;
  f.answer<flights>();
  f.answer<hotels>(away_then_book(6));
  BOOST_REQUIRE(f.start("t6", {"fay"}));
  for (int i = 0; i < 3; ++i) f.advance(100ms);
  auto before = f.status("t6");
  BOOST_REQUIRE(before);
  BOOST_REQUIRE_EQUAL(before->status, "running");
  auto head = f.journal().head_of(sagas::saga_stream<trip>("t6"));
  BOOST_REQUIRE(head);
  BOOST_TEST_MESSAGE("the saga has " << head->highest_sequence << " events");
  BOOST_REQUIRE_GE(head->highest_sequence, 5u);
  f.restart_sagas();
  // Three requests reach the saga before it has recovered.
  auto replies =
      std::make_shared<std::vector<caf::expected<sagas::saga_status>>>();
  auto reg = f.saga_registry();
  f.system().spawn([reg, replies](caf::event_based_actor* self) {
    for (int i = 0; i < 3; ++i)
      self->request(reg, caf::infinite, runtime::route_atom::value,
                    std::string{"t6"},
                    caf::make_message(sagas::status_atom::value))
          .then([replies](sagas::saga_status& s) { replies->emplace_back(s); },
                [replies](caf::error& e) { replies->emplace_back(e); });
  });
  f.run();
  BOOST_REQUIRE_EQUAL(replies->size(), 3u);
  size_t overflowed = 0;
  for (auto& r : *replies) {
    if (!r) {
      BOOST_CHECK_MESSAGE(runtime::is(r.error(), runtime::errc::stash_overflow),
                          runtime::describe(r.error()));
      ++overflowed;
      continue;
    }
    BOOST_CHECK_EQUAL(r->status, before->status);
    BOOST_CHECK_EQUAL(r->step, before->step);
    BOOST_CHECK_EQUAL(r->attempt, before->attempt);
  }
  BOOST_CHECK_EQUAL(overflowed, 1u);
  // Recovered, it goes on where it stood.
  for (int i = 0; i < 10; ++i) f.advance(100ms);
  BOOST_CHECK_EQUAL(f.status("t6")->status, "completed");
  auto ids = f.sent_ids();
  BOOST_CHECK_EQUAL(
      std::count(ids.begin(), ids.end(), std::string{"saga-trip-t6/1/do"}), 7);
}

// The step's command is accepted, but its event decides it: an event
// that is not about it is recorded and ignored, the confirmation
// completes the saga.
BOOST_AUTO_TEST_CASE(an_event_decided_step_completes_on_its_event) {
  sagas::saga_fixture<trip> f{event_steps(10s)};
  register_venue_events(f);
  f.answer<flights>();
  f.answer<venues>();
  BOOST_REQUIRE(f.start("e1", {"gus"}));
  BOOST_CHECK_EQUAL(f.status("e1")->status, "running");
  auto noise = f.deliver("e1", "venues-gus", noted{});
  BOOST_REQUIRE(noise);
  BOOST_CHECK(*noise);
  BOOST_CHECK_EQUAL(f.status("e1")->status, "running");
  auto done = f.deliver("e1", "venues-gus", confirmed{"v-1"});
  BOOST_REQUIRE(done);
  BOOST_CHECK_EQUAL(f.status("e1")->status, "completed");
  BOOST_CHECK((f.sent_ids() == std::vector<std::string>{"saga-trip-e1/0/do",
                                                        "saga-trip-e1/1/do"}));
}

// A declining event fails the step for good: its own compensation runs
// first (its command may have taken effect), then the flight's.
BOOST_AUTO_TEST_CASE(a_declining_event_compensates_the_step_itself_too) {
  sagas::saga_fixture<trip> f{event_steps(10s)};
  register_venue_events(f);
  f.answer<flights>();
  f.answer<venues>();
  BOOST_REQUIRE(f.start("e2", {"hal"}));
  BOOST_REQUIRE(f.deliver("e2", "venues-hal", declined{"full"}));
  BOOST_CHECK_EQUAL(f.status("e2")->status, "compensated");
  BOOST_CHECK(
      (f.sent_ids() ==
       std::vector<std::string>{"saga-trip-e2/0/do", "saga-trip-e2/1/do",
                                "saga-trip-e2/1/undo", "saga-trip-e2/0/undo"}));
  BOOST_CHECK(f.status("e2")->error.find("full") != std::string::npos);
}

// No event within the step's time: it fails when its due time passes on
// the fixture's clock; an event after that is recorded, but decides
// nothing.
BOOST_AUTO_TEST_CASE(a_step_waiting_past_its_time_fails) {
  sagas::saga_fixture<trip> f{event_steps(2s)};
  register_venue_events(f);
  f.answer<flights>();
  f.answer<venues>();
  BOOST_REQUIRE(f.start("e3", {"ida"}));
  f.advance(1900ms);
  BOOST_CHECK_EQUAL(f.status("e3")->status, "running");
  f.advance(200ms);
  BOOST_CHECK_EQUAL(f.status("e3")->status, "compensated");
  auto late = f.deliver("e3", "venues-ida", confirmed{"v-3"});
  BOOST_REQUIRE(late);
  BOOST_CHECK_EQUAL(f.status("e3")->status, "compensated");
}

// A saga told to passivate while it still recovers (its registry keeps
// one saga active, and a second one activated) passivates once it has
// recovered, and asks the registry that passivated it to wake it when its
// retry is due: it completes without anyone asking for it again.
BOOST_AUTO_TEST_CASE(a_saga_passivated_while_recovering_is_woken_for_retry) {
  runtime::registry_options one_active;
  one_active.max_active = 1;
  sagas::saga_fixture<trip> f{steps(0ms), one_active};
  f.recovery_chunk = 1;
  f.answer<flights>();
  f.answer<hotels>(away_then_book(12));
  BOOST_REQUIRE(f.start("w1", {"joe"}));
  for (int i = 0; i < 8; ++i) f.advance(100ms);
  f.restart_sagas();
  // w1 activates and recovers in chunks; w2's activation passivates it
  // meanwhile.
  auto reg = f.saga_registry();
  f.system().spawn([reg](caf::event_based_actor* self) {
    for (auto id : {"w1", "w2"})
      self->send(reg, runtime::route_atom::value, std::string{id},
                 caf::make_message(sagas::status_atom::value));
  });
  f.run();
  for (int i = 0; i < 12; ++i) f.advance(100ms);
  auto ids = f.sent_ids();
  // Before anyone asks again: the registry woke it, and it retried until
  // the hotel said yes.
  BOOST_CHECK_EQUAL(
      std::count(ids.begin(), ids.end(), std::string{"saga-trip-w1/1/do"}), 13);
  BOOST_CHECK_EQUAL(f.status("w1")->status, "completed");
}

// restart_sagas stops the sagas with their registry, as a node's crash
// would: a saga retrying before it sends nothing more until something
// activates it again.
BOOST_AUTO_TEST_CASE(restart_sagas_stops_the_running_sagas) {
  sagas::saga_fixture<trip> f{steps(0ms)};
  f.answer<flights>();
  f.answer<hotels>(always_away());
  BOOST_REQUIRE(f.start("r1", {"kim"}));
  f.advance(100ms);
  auto before = f.sent().size();
  f.restart_sagas();
  for (int i = 0; i < 5; ++i) f.advance(100ms);
  BOOST_CHECK_EQUAL(f.sent().size(), before);
  // Activated again, it goes on retrying.
  BOOST_CHECK_EQUAL(f.status("r1")->status, "running");
  f.advance(100ms);
  BOOST_CHECK_GT(f.sent().size(), before);
}

BOOST_AUTO_TEST_SUITE_END()
