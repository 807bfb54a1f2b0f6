// The cluster protocol of aggregate registries: commands and state reads
// survive the trip as bytes, and malformed bytes from a peer are refused
// with an error, never a crash and never an applied command.

#include <boost/test/unit_test.hpp>

#include <random>

#include "counter.hpp"
#include "mnemo/actors/remote_aggregate.hpp"
#include "mnemo/actors/testkit.hpp"

using namespace mnemo;
using namespace counter_model;

namespace {

struct protocol_fixture : actors::aggregate_fixture<counter> {
  runtime::remote_protocol protocol = actors::aggregate_protocol<counter>();
  caf::actor registry = spawn_registry();

  // Runs `bytes` against the registry as the owning member would.
  caf::expected<runtime::bytes> serve(const std::string& id,
                                      const runtime::bytes& request) {
    auto out = std::make_shared<caf::expected<runtime::bytes>>(
        runtime::make_error(runtime::errc::entity_stopped, "no answer"));
    auto p = protocol;
    auto reg = registry;
    system().spawn([=](caf::event_based_actor* self) {
      p.serve(self, reg, id, request,
              [out](caf::expected<runtime::bytes> r) { *out = std::move(r); });
    });
    run();
    return *out;
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(remote_protocol)

BOOST_AUTO_TEST_CASE(commands_and_state_reads_travel_as_bytes) {
  protocol_fixture f;
  auto request = actors::command_message<counter>(add{5}, "cmd-1");
  auto bytes = f.protocol.encode(request);
  BOOST_REQUIRE(bytes);
  auto reply = f.serve("c1", *bytes);
  BOOST_REQUIRE(reply);
  auto decoded = f.protocol.decode_reply(request, *reply);
  BOOST_REQUIRE(decoded);
  BOOST_REQUIRE(decoded->match_elements<count>());
  BOOST_CHECK_EQUAL(decoded->get_as<count>(0).total, 5);
  // The same command id again: applied once.
  BOOST_REQUIRE(f.serve("c1", *bytes));
  auto read = caf::make_message(actors::state_atom::value);
  auto state = f.serve("c1", *f.protocol.encode(read));
  BOOST_REQUIRE(state);
  auto versioned = f.protocol.decode_reply(read, *state);
  BOOST_REQUIRE(versioned);
  BOOST_REQUIRE((versioned->match_elements<count, uint64_t>()));
  BOOST_CHECK_EQUAL(versioned->get_as<count>(0).total, 5);
  BOOST_CHECK_EQUAL(versioned->get_as<uint64_t>(1), 1u);
  // Messages the protocol does not know stay home.
  BOOST_CHECK(!f.protocol.encode(caf::make_message(std::string{"hello"})));
}

BOOST_AUTO_TEST_CASE(malformed_bytes_are_refused_and_apply_nothing) {
  protocol_fixture f;
  auto request = actors::command_message<counter>(add{1}, "cmd-x");
  auto good = *f.protocol.encode(request);
  std::mt19937 rng{11};
  size_t refused = 0;
  for (int i = 0; i < 300; ++i) {
    auto bad = good;
    switch (i % 4) {
      case 0:  // truncated
        bad.resize(rng() % bad.size());
        break;
      case 1:  // trailing garbage
        bad.push_back(static_cast<char>(rng()));
        break;
      case 2:  // unknown kind
        bad[0] = static_cast<char>(3 + rng() % 250);
        break;
      default:  // random bytes
        for (auto& b : bad) b = static_cast<char>(rng());
    }
    auto r = f.serve("victim", bad);
    if (!r) ++refused;
  }
  BOOST_TEST_MESSAGE(refused << " of 300 malformed requests refused");
  BOOST_CHECK_EQUAL(refused, 300u);
  // A reply cut short or padded does not decode either.
  auto reply = f.serve("other", good);
  BOOST_REQUIRE(reply);
  auto shorter = *reply;
  shorter.pop_back();
  BOOST_CHECK(!f.protocol.decode_reply(request, shorter));
  auto longer = *reply;
  longer.push_back('x');
  BOOST_CHECK(!f.protocol.decode_reply(request, longer));
  BOOST_CHECK(f.protocol.decode_reply(request, *reply));
  // None of them applied a command to the entity.
  auto read = caf::make_message(actors::state_atom::value);
  auto state = f.serve("victim", *f.protocol.encode(read));
  BOOST_REQUIRE(state);
  auto versioned = f.protocol.decode_reply(read, *state);
  BOOST_REQUIRE(versioned);
  BOOST_CHECK_LE(versioned->get_as<uint64_t>(1), 1u);
}

BOOST_AUTO_TEST_SUITE_END()
