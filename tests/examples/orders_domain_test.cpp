// The aggregates of the order-fulfilment example on the testkit: every
// rule, every error code, and the repeated commands that must persist
// nothing (compensations and retries are idempotent by state).

#define BOOST_TEST_MODULE mnemo_orders_domain
#include <boost/test/unit_test.hpp>

#include "../../examples/orders/inventory.hpp"
#include "../../examples/orders/order.hpp"
#include "../../examples/orders/payment.hpp"
#include "../../examples/orders/shipment.hpp"
#include "mnemo/actors/testkit.hpp"

using namespace mnemo;
using namespace orders;

namespace {

template <class T>
std::string why(const caf::expected<T>& x) {
  return x ? std::string{"ok"} : runtime::describe(x.error());
}

// Checks that `x` failed with `code`; the message names what came instead.
template <class T>
void check_rejected(const caf::expected<T>& x, errc code) {
  BOOST_CHECK_MESSAGE(!x && is(x.error(), code),
                      "expected " << to_string(code) << ", got " << why(x));
}

// Runs `cmd` on aggregate `id` and checks that it succeeded without
// persisting an event; returns the reply.
template <class A>
typename A::reply unchanged(actors::aggregate_fixture<A>& f,
                            const std::string& id, typename A::command cmd) {
  auto before = f.events(id);
  BOOST_REQUIRE(before);
  auto res = f.when(id, std::move(cmd));
  BOOST_REQUIRE_MESSAGE(res, why(res));
  auto after = f.events(id);
  BOOST_REQUIRE(after);
  BOOST_CHECK_EQUAL(after->size(), before->size());
  return *res;
}

// Runs `cmd` and checks that it persisted exactly one event, which it
// returns.
template <class A>
typename A::event one_event(actors::aggregate_fixture<A>& f,
                            const std::string& id, typename A::command cmd) {
  auto before = f.events(id);
  BOOST_REQUIRE(before);
  auto res = f.when(id, std::move(cmd));
  BOOST_REQUIRE_MESSAGE(res, why(res));
  auto after = f.events(id);
  BOOST_REQUIRE(after);
  BOOST_REQUIRE_EQUAL(after->size(), before->size() + 1);
  return after->back();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(orders_errors)

BOOST_AUTO_TEST_CASE(codes_have_stable_values_and_names) {
  BOOST_CHECK_EQUAL(static_cast<int>(errc::already_exists), 1);
  BOOST_CHECK_EQUAL(static_cast<int>(errc::not_captured), 8);
  BOOST_CHECK_EQUAL(to_string(errc::insufficient_stock), "insufficient_stock");
  BOOST_CHECK_EQUAL(to_string(errc::payment_declined), "payment_declined");
  BOOST_CHECK_EQUAL(to_string(static_cast<errc>(200)), "unknown");
  auto err = make_error(errc::unknown_sku, "sku-9 was never stocked");
  BOOST_CHECK(err.category() == caf::atom("orders"));
  BOOST_CHECK(is(err, errc::unknown_sku));
  BOOST_CHECK(!is(err, errc::unknown_order));
}

BOOST_AUTO_TEST_CASE(describe_names_category_code_and_message) {
  caf::actor_system_config cfg;
  mnemo::runtime::add_error_category<errc>(cfg);
  auto text = runtime::describe(make_error(errc::invalid_state, "why"));
  BOOST_CHECK_EQUAL(text, "orders:invalid_state: why");
}

BOOST_AUTO_TEST_SUITE_END()

// -- order --------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(order_aggregate)

using fixture = actors::aggregate_fixture<order>;

BOOST_AUTO_TEST_CASE(place_accept_complete) {
  fixture f;
  auto placed = f.when("o1", place_order{"alice", "sku-1", 3, 250});
  BOOST_REQUIRE_MESSAGE(placed, why(placed));
  BOOST_CHECK_EQUAL(placed->status, "placed");
  BOOST_CHECK_EQUAL(f.when("o1", accept_order{})->status, "accepted");
  BOOST_CHECK_EQUAL(f.when("o1", complete_order{"trk-1"})->status, "completed");
  auto events = f.events("o1");
  BOOST_REQUIRE(events);
  BOOST_REQUIRE_EQUAL(events->size(), 3u);
  BOOST_CHECK(std::get<order_placed>((*events)[0]) ==
              (order_placed{"alice", "sku-1", 3, 250}));
  BOOST_CHECK(std::holds_alternative<order_accepted>((*events)[1]));
  BOOST_CHECK_EQUAL(std::get<order_completed>((*events)[2]).tracking, "trk-1");
  f.restart("o1");
  auto st = f.state("o1");
  BOOST_REQUIRE(st);
  BOOST_CHECK(st->exists);
  BOOST_CHECK(st->status == order_status::completed);
  BOOST_CHECK_EQUAL(st->customer, "alice");
  BOOST_CHECK_EQUAL(st->amount(), 750);
  BOOST_CHECK_EQUAL(st->tracking, "trk-1");
}

BOOST_AUTO_TEST_CASE(place_validates_its_input) {
  fixture f;
  check_rejected(f.when("o1", place_order{"", "sku-1", 1, 1}),
                 errc::invalid_input);
  check_rejected(f.when("o1", place_order{"alice", "", 1, 1}),
                 errc::invalid_input);
  check_rejected(f.when("o1", place_order{"alice", "s", 0, 1}),
                 errc::invalid_input);
  check_rejected(f.when("o1", place_order{"alice", "s", -2, 1}),
                 errc::invalid_input);
  check_rejected(f.when("o1", place_order{"alice", "s", 1, 0}),
                 errc::invalid_input);
  check_rejected(f.when("o1", place_order{"alice", "s", 1, -5}),
                 errc::invalid_input);
  // Above the limit, and a product that overflows int64.
  check_rejected(f.when("o1", place_order{"alice", "s", 1'000'001, 1'000'000}),
                 errc::invalid_input);
  check_rejected(
      f.when("o1", place_order{"alice", "s", INT64_MAX / 2, INT64_MAX / 2}),
      errc::invalid_input);
  BOOST_CHECK(f.events("o1")->empty());
  // Exactly at the limit is fine.
  auto ok = f.when("o1", place_order{"alice", "s", 1'000'000, 1'000'000});
  BOOST_CHECK_MESSAGE(ok, why(ok));
}

BOOST_AUTO_TEST_CASE(place_twice_is_already_exists) {
  fixture f;
  f.given("o1", {order_placed{"alice", "s", 1, 1}});
  check_rejected(f.when("o1", place_order{"bob", "s", 1, 1}),
                 errc::already_exists);
  BOOST_CHECK_EQUAL(f.events("o1")->size(), 1u);
}

BOOST_AUTO_TEST_CASE(commands_on_a_missing_order_are_unknown_order) {
  fixture f;
  check_rejected(f.when("nope", accept_order{}), errc::unknown_order);
  check_rejected(f.when("nope", complete_order{"t"}), errc::unknown_order);
  check_rejected(f.when("nope", cancel_order{"r"}), errc::unknown_order);
  BOOST_CHECK(f.events("nope")->empty());
}

BOOST_AUTO_TEST_CASE(repeated_transitions_persist_nothing) {
  fixture f;
  f.given("o1", {order_placed{"alice", "s", 1, 1}, order_accepted{}});
  BOOST_CHECK_EQUAL(unchanged(f, "o1", accept_order{}).status, "accepted");
  f.given("o2", {order_placed{"alice", "s", 1, 1}, order_accepted{},
                 order_completed{"t"}});
  BOOST_CHECK_EQUAL(unchanged(f, "o2", complete_order{"t2"}).status,
                    "completed");
  BOOST_CHECK_EQUAL(f.state("o2")->tracking, "t");
  f.given("o3", {order_placed{"alice", "s", 1, 1}, order_cancelled{"r"}});
  BOOST_CHECK_EQUAL(unchanged(f, "o3", cancel_order{"again"}).status,
                    "cancelled");
  BOOST_CHECK_EQUAL(f.state("o3")->reason, "r");
}

BOOST_AUTO_TEST_CASE(out_of_order_transitions_are_invalid_state) {
  fixture f;
  f.given("placed", {order_placed{"alice", "s", 1, 1}});
  check_rejected(f.when("placed", complete_order{"t"}), errc::invalid_state);
  f.given("done", {order_placed{"alice", "s", 1, 1}, order_accepted{},
                   order_completed{"t"}});
  check_rejected(f.when("done", cancel_order{"late"}), errc::invalid_state);
  check_rejected(f.when("done", accept_order{}), errc::invalid_state);
  f.given("off", {order_placed{"alice", "s", 1, 1}, order_cancelled{"r"}});
  check_rejected(f.when("off", complete_order{"t"}), errc::invalid_state);
  check_rejected(f.when("off", accept_order{}), errc::invalid_state);
  BOOST_CHECK_EQUAL(f.events("placed")->size(), 1u);
  BOOST_CHECK_EQUAL(f.events("done")->size(), 3u);
  BOOST_CHECK_EQUAL(f.events("off")->size(), 2u);
}

BOOST_AUTO_TEST_CASE(cancel_from_placed_and_from_accepted) {
  fixture f;
  f.given("o1", {order_placed{"alice", "s", 1, 1}});
  auto ev = one_event(f, "o1", cancel_order{"customer asked"});
  BOOST_CHECK_EQUAL(std::get<order_cancelled>(ev).reason, "customer asked");
  f.given("o2", {order_placed{"alice", "s", 1, 1}, order_accepted{}});
  BOOST_CHECK(std::holds_alternative<order_cancelled>(
      one_event(f, "o2", cancel_order{"out of stock"})));
  BOOST_CHECK(f.state("o2")->status == order_status::cancelled);
}

BOOST_AUTO_TEST_CASE(events_round_trip) {
  fixture f;
  for (order::event ev :
       {order::event{order_placed{"alice", "s", 2, 3}},
        order::event{order_accepted{}}, order::event{order_completed{"t"}},
        order::event{order_cancelled{"r"}}}) {
    auto back = f.round_trip(ev);
    BOOST_REQUIRE_MESSAGE(back, why(back));
    BOOST_CHECK(*back == ev);
  }
}

BOOST_AUTO_TEST_CASE(snapshots_restore_the_state) {
  actors::aggregate_options opts;
  opts.snapshot_every = 2;
  fixture f{opts};
  BOOST_REQUIRE(f.when("o1", place_order{"alice", "s", 2, 3}));
  BOOST_REQUIRE(f.when("o1", accept_order{}));
  f.restart("o1");
  auto st = f.state("o1");
  BOOST_REQUIRE(st);
  BOOST_CHECK(st->status == order_status::accepted);
  BOOST_CHECK_EQUAL(st->amount(), 6);
}

BOOST_AUTO_TEST_SUITE_END()

// -- inventory ----------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(inventory_aggregate)

using fixture = actors::aggregate_fixture<inventory>;

BOOST_AUTO_TEST_CASE(stock_reserve_commit) {
  fixture f;
  auto stocked = f.when("sku-1", add_stock{10});
  BOOST_REQUIRE_MESSAGE(stocked, why(stocked));
  BOOST_CHECK_EQUAL(stocked->on_hand, 10);
  BOOST_CHECK_EQUAL(stocked->available, 10);
  auto held = f.when("sku-1", reserve{"o1", 4});
  BOOST_REQUIRE_MESSAGE(held, why(held));
  BOOST_CHECK_EQUAL(held->on_hand, 10);
  BOOST_CHECK_EQUAL(held->available, 6);
  auto gone = f.when("sku-1", commit_reservation{"o1"});
  BOOST_REQUIRE_MESSAGE(gone, why(gone));
  BOOST_CHECK_EQUAL(gone->on_hand, 6);
  BOOST_CHECK_EQUAL(gone->available, 6);
  auto events = f.events("sku-1");
  BOOST_REQUIRE_EQUAL(events->size(), 3u);
  BOOST_CHECK(std::get<inventory_committed>((*events)[2]) ==
              (inventory_committed{"o1", 4}));
  f.restart("sku-1");
  auto st = f.state("sku-1");
  BOOST_REQUIRE(st);
  BOOST_CHECK_EQUAL(st->on_hand, 6);
  BOOST_CHECK(st->reserved.empty());
  BOOST_CHECK_EQUAL(st->committed.count("o1"), 1u);
}

BOOST_AUTO_TEST_CASE(add_stock_validates_and_creates_the_sku) {
  fixture f;
  check_rejected(f.when("sku-1", add_stock{0}), errc::invalid_input);
  check_rejected(f.when("sku-1", add_stock{-3}), errc::invalid_input);
  BOOST_CHECK(!f.state("sku-1")->exists);
  BOOST_REQUIRE(f.when("sku-1", add_stock{INT64_MAX}));
  check_rejected(f.when("sku-1", add_stock{1}), errc::invalid_input);
  BOOST_CHECK(f.state("sku-1")->exists);
  BOOST_CHECK_EQUAL(f.events("sku-1")->size(), 1u);
}

BOOST_AUTO_TEST_CASE(reserve_rules) {
  fixture f;
  check_rejected(f.when("never", reserve{"o1", 1}), errc::unknown_sku);
  f.given("sku-1", {inventory_stocked{5}, inventory_reserved{"o0", 2}});
  auto short_of = f.when("sku-1", reserve{"o1", 4});
  check_rejected(short_of, errc::insufficient_stock);
  if (!short_of) {
    auto text = runtime::describe(short_of.error());
    BOOST_CHECK_MESSAGE(text.find("available 3") != std::string::npos &&
                            text.find("asked 4") != std::string::npos,
                        text);
  }
  check_rejected(f.when("sku-1", reserve{"o1", 0}), errc::invalid_input);
  check_rejected(f.when("sku-1", reserve{"", 1}), errc::invalid_input);
  BOOST_CHECK_EQUAL(f.events("sku-1")->size(), 2u);
  // Exactly what is available works.
  BOOST_CHECK_EQUAL(f.when("sku-1", reserve{"o1", 3})->available, 0);
}

BOOST_AUTO_TEST_CASE(reserve_again_for_the_same_order_persists_nothing) {
  fixture f;
  f.given("sku-1", {inventory_stocked{5}, inventory_reserved{"o1", 2}});
  auto r = unchanged(f, "sku-1", reserve{"o1", 2});
  BOOST_CHECK_EQUAL(r.available, 3);
  // Also with another quantity, and once the reservation was shipped.
  unchanged(f, "sku-1", reserve{"o1", 1});
  f.given("sku-1", {inventory_committed{"o1", 2}});
  f.restart("sku-1");
  auto after = unchanged(f, "sku-1", reserve{"o1", 2});
  BOOST_CHECK_EQUAL(after.on_hand, 3);
  BOOST_CHECK_EQUAL(after.available, 3);
}

BOOST_AUTO_TEST_CASE(release_always_succeeds) {
  fixture f;
  f.given("sku-1", {inventory_stocked{5}, inventory_reserved{"o1", 2}});
  auto ev = one_event(f, "sku-1", release{"o1"});
  BOOST_CHECK(std::get<inventory_released>(ev) ==
              (inventory_released{"o1", 2}));
  BOOST_CHECK_EQUAL(f.state("sku-1")->available(), 5);
  // Released already, never reserved, unknown SKU: ok, nothing persisted.
  BOOST_CHECK_EQUAL(unchanged(f, "sku-1", release{"o1"}).available, 5);
  BOOST_CHECK_EQUAL(unchanged(f, "sku-1", release{"o9"}).available, 5);
  auto unknown = unchanged(f, "never", release{"o1"});
  BOOST_CHECK_EQUAL(unknown.on_hand, 0);
  BOOST_CHECK(f.events("never")->empty());
}

BOOST_AUTO_TEST_CASE(commit_rules) {
  fixture f;
  f.given("sku-1", {inventory_stocked{5}, inventory_reserved{"o1", 2},
                    inventory_committed{"o1", 2}});
  BOOST_CHECK_EQUAL(unchanged(f, "sku-1", commit_reservation{"o1"}).on_hand, 3);
  check_rejected(f.when("sku-1", commit_reservation{"o2"}),
                 errc::invalid_state);
  f.given("sku-1", {inventory_reserved{"o3", 1}, inventory_released{"o3", 1}});
  f.restart("sku-1");
  check_rejected(f.when("sku-1", commit_reservation{"o3"}),
                 errc::invalid_state);
  BOOST_CHECK_EQUAL(f.events("sku-1")->size(), 5u);
}

BOOST_AUTO_TEST_CASE(events_round_trip) {
  fixture f;
  for (inventory::event ev : {inventory::event{inventory_stocked{5}},
                              inventory::event{inventory_reserved{"o", 1}},
                              inventory::event{inventory_released{"o", 1}},
                              inventory::event{inventory_committed{"o", 1}}}) {
    auto back = f.round_trip(ev);
    BOOST_REQUIRE_MESSAGE(back, why(back));
    BOOST_CHECK(*back == ev);
  }
}

BOOST_AUTO_TEST_SUITE_END()

// -- payment ------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(payment_aggregate)

using fixture = actors::aggregate_fixture<payment>;

BOOST_AUTO_TEST_CASE(request_capture_refund) {
  fixture f;
  auto req = f.when("o1", request_payment{"alice", 750});
  BOOST_REQUIRE_MESSAGE(req, why(req));
  BOOST_CHECK_EQUAL(req->status, "requested");
  BOOST_CHECK_EQUAL(req->amount, 750);
  BOOST_CHECK_EQUAL(f.when("o1", capture_payment{})->status, "captured");
  BOOST_CHECK_EQUAL(f.when("o1", refund_payment{})->status, "refunded");
  auto events = f.events("o1");
  BOOST_REQUIRE_EQUAL(events->size(), 3u);
  BOOST_CHECK(std::get<payment_requested>((*events)[0]) ==
              (payment_requested{"alice", 750}));
  BOOST_CHECK(std::holds_alternative<payment_captured>((*events)[1]));
  BOOST_CHECK(std::holds_alternative<payment_refunded>((*events)[2]));
  f.restart("o1");
  BOOST_CHECK(f.state("o1")->status == payment_status::refunded);
}

BOOST_AUTO_TEST_CASE(amount_must_be_positive) {
  fixture f;
  check_rejected(f.when("o1", request_payment{"alice", 0}),
                 errc::invalid_input);
  check_rejected(f.when("o1", request_payment{"alice", -1}),
                 errc::invalid_input);
  BOOST_CHECK(f.events("o1")->empty());
}

BOOST_AUTO_TEST_CASE(repeated_commands_persist_nothing) {
  fixture f;
  f.given("o1", {payment_requested{"alice", 5}});
  BOOST_CHECK_EQUAL(unchanged(f, "o1", request_payment{"alice", 5}).status,
                    "requested");
  f.given("o2", {payment_requested{"alice", 5}, payment_captured{}});
  BOOST_CHECK_EQUAL(unchanged(f, "o2", capture_payment{}).status, "captured");
  f.given("o3", {payment_requested{"alice", 5}, payment_declined{"no"}});
  BOOST_CHECK_EQUAL(unchanged(f, "o3", decline_payment{"no"}).status,
                    "declined");
  f.given("o4", {payment_requested{"alice", 5}, payment_captured{},
                 payment_refunded{}});
  BOOST_CHECK_EQUAL(unchanged(f, "o4", refund_payment{}).status, "refunded");
  BOOST_CHECK_EQUAL(unchanged(f, "o4", capture_payment{}).status, "refunded");
}

BOOST_AUTO_TEST_CASE(decline_then_capture_and_back_are_invalid_state) {
  fixture f;
  f.given("declined", {payment_requested{"alice", 5}, payment_declined{"no"}});
  check_rejected(f.when("declined", capture_payment{}), errc::invalid_state);
  f.given("captured", {payment_requested{"alice", 5}, payment_captured{}});
  check_rejected(f.when("captured", decline_payment{"late"}),
                 errc::invalid_state);
  check_rejected(f.when("none", capture_payment{}), errc::invalid_state);
  check_rejected(f.when("none", decline_payment{"x"}), errc::invalid_state);
  f.given("refunded", {payment_requested{"alice", 5}, payment_captured{},
                       payment_refunded{}});
  check_rejected(f.when("refunded", decline_payment{"x"}), errc::invalid_state);
  BOOST_CHECK_EQUAL(f.events("declined")->size(), 2u);
  BOOST_CHECK_EQUAL(f.events("captured")->size(), 2u);
  BOOST_CHECK(f.events("none")->empty());
}

BOOST_AUTO_TEST_CASE(refund_before_capture_declines_so_late_capture_fails) {
  fixture f;
  f.given("o1", {payment_requested{"alice", 5}});
  auto ev = one_event(f, "o1", refund_payment{});
  BOOST_CHECK_EQUAL(std::get<payment_declined>(ev).reason,
                    "cancelled before capture");
  check_rejected(f.when("o1", capture_payment{}), errc::invalid_state);
  BOOST_CHECK_EQUAL(unchanged(f, "o1", refund_payment{}).status, "declined");
}

BOOST_AUTO_TEST_CASE(refund_of_nothing_persists_nothing) {
  fixture f;
  auto none = unchanged(f, "o1", refund_payment{});
  BOOST_CHECK_EQUAL(none.status, "none");
  BOOST_CHECK_EQUAL(none.amount, 0);
  f.given("o2", {payment_requested{"alice", 5}, payment_declined{"card"}});
  BOOST_CHECK_EQUAL(unchanged(f, "o2", refund_payment{}).status, "declined");
}

BOOST_AUTO_TEST_CASE(events_round_trip) {
  fixture f;
  for (payment::event ev : {payment::event{payment_requested{"a", 1}},
                            payment::event{payment_captured{}},
                            payment::event{payment_declined{"r"}},
                            payment::event{payment_refunded{}}}) {
    auto back = f.round_trip(ev);
    BOOST_REQUIRE_MESSAGE(back, why(back));
    BOOST_CHECK(*back == ev);
  }
}

BOOST_AUTO_TEST_SUITE_END()

// -- shipment -----------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(shipment_aggregate)

using fixture = actors::aggregate_fixture<shipment>;

BOOST_AUTO_TEST_CASE(create_and_cancel) {
  fixture f;
  auto made = f.when("o1", create_shipment{"sku-1", 2, "trk-o1"});
  BOOST_REQUIRE_MESSAGE(made, why(made));
  BOOST_CHECK_EQUAL(made->tracking, "trk-o1");
  BOOST_CHECK_EQUAL(made->status, "created");
  auto off = f.when("o1", cancel_shipment{});
  BOOST_REQUIRE_MESSAGE(off, why(off));
  BOOST_CHECK_EQUAL(off->status, "cancelled");
  BOOST_CHECK_EQUAL(off->tracking, "trk-o1");
  auto events = f.events("o1");
  BOOST_REQUIRE_EQUAL(events->size(), 2u);
  BOOST_CHECK(std::get<shipment_created>((*events)[0]) ==
              (shipment_created{"sku-1", 2, "trk-o1"}));
  f.restart("o1");
  BOOST_CHECK(f.state("o1")->status == shipment_status::cancelled);
}

BOOST_AUTO_TEST_CASE(create_validates_its_input) {
  fixture f;
  check_rejected(f.when("o1", create_shipment{"", 1, "t"}),
                 errc::invalid_input);
  check_rejected(f.when("o1", create_shipment{"s", 0, "t"}),
                 errc::invalid_input);
  check_rejected(f.when("o1", create_shipment{"s", 1, ""}),
                 errc::invalid_input);
  BOOST_CHECK(f.events("o1")->empty());
}

BOOST_AUTO_TEST_CASE(repeated_commands_persist_nothing) {
  fixture f;
  f.given("o1", {shipment_created{"s", 1, "t1"}});
  auto again = unchanged(f, "o1", create_shipment{"s", 1, "other"});
  BOOST_CHECK_EQUAL(again.tracking, "t1");
  BOOST_CHECK_EQUAL(again.status, "created");
  f.given("o2", {shipment_created{"s", 1, "t2"}, shipment_cancelled{}});
  BOOST_CHECK_EQUAL(unchanged(f, "o2", cancel_shipment{}).status, "cancelled");
  BOOST_CHECK_EQUAL(unchanged(f, "o2", create_shipment{"s", 1, "t2"}).status,
                    "cancelled");
  // A compensation for a shipment that never happened.
  BOOST_CHECK_EQUAL(unchanged(f, "o3", cancel_shipment{}).status, "none");
}

BOOST_AUTO_TEST_SUITE_END()
