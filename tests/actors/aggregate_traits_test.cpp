// What the library supplies when an aggregate leaves it out
// (actors/aggregate_traits.hpp): dispatch of commands to `decide`
// overloads, of events to `evolve` or to the state's `apply`, the stored
// names from `event_names` and `state_name`, the reply from `reply_of`,
// and rejections with a code of an error enum.

#include <boost/test/unit_test.hpp>

#include "mnemo/actors/testkit.hpp"
#include "mnemo/persistence/snapshot_store.hpp"
#include "mnemo/runtime/error_enum.hpp"
#include "mnemo/runtime/message.hpp"

using namespace mnemo;

namespace lamp_model {

MNEMO_ERROR_ENUM(lamp_errc, "lamp", none, broken, already_on)

// clang-format off
struct switch_on { MNEMO_EMPTY_MESSAGE(switch_on) };
struct dim { int64_t to = 0; MNEMO_MESSAGE(dim, to) };
struct switched_on { MNEMO_EMPTY_MESSAGE(switched_on) };
struct dimmed { int64_t to = 0; MNEMO_MESSAGE(dimmed, to) };
struct lamp_reply { int64_t level = 0; bool on = false;
                    MNEMO_MESSAGE(lamp_reply, level, on) };
// clang-format on

struct lamp_state {
  bool on = false;
  int64_t level = 0;
  int64_t changes = 0;
  MNEMO_MESSAGE(lamp_state, on, level, changes)
  // One event applied by the state itself...
  void apply(const dimmed& e) {
    level = e.to;
    ++changes;
  }
};

struct lamp {
  using state = lamp_state;
  using command = std::variant<switch_on, dim>;
  using event = std::variant<switched_on, dimmed>;
  using reply = lamp_reply;
  using effect = actors::effect<lamp>;
  static constexpr const char* type_name = "lamp";
  static constexpr const char* event_names[] = {"lamp.on", "lamp.dimmed"};
  static constexpr const char* state_name = "lamp.state";

  static reply reply_of(const state& s) { return reply{s.level, s.on}; }

  static effect decide(const state& s, const switch_on&) {
    if (s.on) return effect::reject(lamp_errc::already_on, "it is on");
    // Switching on also sets full brightness: two events, one batch.
    return effect::persist({switched_on{}, dimmed{100}});
  }
  static effect decide(const state& s, const dim& c) {
    if (c.to < 0 || c.to > 100)
      return effect::reject(lamp_errc::broken,
                            "level " + std::to_string(c.to) + " is not 0-100");
    // A reply function of its own still wins over reply_of.
    if (c.to == s.level) return effect::respond(reply{s.level, s.on});
    return effect::persist(dimmed{c.to}, [](const state& n) {
      return reply{-n.level, n.on};
    });
  }
  // ...the other by the aggregate.
  static void evolve(state& s, const switched_on&) {
    s.on = true;
    ++s.changes;
  }
};

}  // namespace lamp_model

BOOST_AUTO_TEST_SUITE(aggregate_traits)

BOOST_AUTO_TEST_CASE(names_come_from_event_names_and_state_name) {
  using namespace lamp_model;
  actors::aggregate_fixture<lamp> f;
  auto on = f.registry().name_of<switched_on>();
  auto dimmed_name = f.registry().name_of<dimmed>();
  auto state_name = f.registry().name_of<lamp_state>();
  BOOST_REQUIRE(on && dimmed_name && state_name);
  BOOST_CHECK_EQUAL(*on, "lamp.on");
  BOOST_CHECK_EQUAL(*dimmed_name, "lamp.dimmed");
  BOOST_CHECK_EQUAL(*state_name, "lamp.state");
  BOOST_CHECK(f.check_types().empty());
}

BOOST_AUTO_TEST_CASE(decide_evolve_and_reply_of_are_dispatched) {
  using namespace lamp_model;
  actors::aggregate_fixture<lamp> f;
  auto on = f.run_command("l1", switch_on{});
  BOOST_REQUIRE_MESSAGE(on.reply,
                        (on.reply ? "" : runtime::describe(on.reply.error())));
  // reply_of of the state after both events.
  BOOST_CHECK(*on.reply == (lamp_reply{100, true}));
  BOOST_REQUIRE_EQUAL(on.events.size(), 2u);
  BOOST_CHECK(on.state == (lamp_state{true, 100, 2}));
  BOOST_CHECK_EQUAL(on.version, 2u);
  // The command's own reply function.
  auto dim40 = f.run_command("l1", dim{40});
  BOOST_REQUIRE(dim40.reply);
  BOOST_CHECK(*dim40.reply == (lamp_reply{-40, true}));
  BOOST_CHECK(dim40.state == (lamp_state{true, 40, 3}));
  // respond: nothing persisted.
  auto same = f.run_command("l1", dim{40});
  BOOST_REQUIRE(same.reply);
  BOOST_CHECK(*same.reply == (lamp_reply{40, true}));
  BOOST_CHECK(same.events.empty());
}

BOOST_AUTO_TEST_CASE(rejections_carry_the_enum_code_and_the_reason) {
  using namespace lamp_model;
  actors::aggregate_fixture<lamp> f;
  BOOST_REQUIRE(f.run_command("l1", switch_on{}).reply);
  auto twice = f.run_command("l1", switch_on{});
  BOOST_REQUIRE(!twice.reply);
  BOOST_CHECK(is(twice.reply.error(), lamp_errc::already_on));
  BOOST_CHECK(twice.events.empty());
  auto bad = f.run_command("l1", dim{101});
  BOOST_REQUIRE(!bad.reply);
  BOOST_CHECK(is(bad.reply.error(), lamp_errc::broken));
  auto text = runtime::describe(bad.reply.error());
  BOOST_CHECK_MESSAGE(text.find("level 101 is not 0-100") != std::string::npos,
                      text);
}

// state_name registers the state for snapshots: with snapshot_every 2 a
// snapshot is stored, and a restarted instance recovers from it.
BOOST_AUTO_TEST_CASE(state_name_makes_snapshots) {
  using namespace lamp_model;
  actors::aggregate_options opts;
  opts.snapshot_every = 2;
  actors::aggregate_fixture<lamp> f{opts};
  BOOST_REQUIRE(f.run_command("l1", switch_on{}).reply);
  BOOST_REQUIRE(f.run_command("l1", dim{10}).reply);
  f.run();
  auto snap = f.journal().snapshots().load(
      actors::stream_of<lamp>("l1"), persistence::snapshot_criteria::latest());
  BOOST_REQUIRE(snap);
  BOOST_REQUIRE(*snap);
  BOOST_CHECK_EQUAL((*snap)->type, "lamp.state");
  BOOST_CHECK_EQUAL((*snap)->meta.sequence, 2u);
  f.restart("l1");
  auto st = f.versioned_state("l1");
  BOOST_REQUIRE(st);
  BOOST_CHECK(st->first == (lamp_state{true, 10, 3}));
  BOOST_CHECK_EQUAL(st->second, 3u);
}

BOOST_AUTO_TEST_SUITE_END()
