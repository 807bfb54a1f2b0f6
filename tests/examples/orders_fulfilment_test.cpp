// The fulfilment process manager on the deterministic scheduler with
// virtual time: the order, inventory, payment and shipment registries, the
// payment gateway, and the saga with its trigger, router and inbox.

#include <boost/test/unit_test.hpp>

#include <memory>
#include <set>

#include "../../examples/orders/fulfilment.hpp"
#include "../../examples/orders/payment_gateway.hpp"
#include "mnemo/actors/projection.hpp"
#include "mnemo/actors/testkit.hpp"
#include "mnemo/sagas/saga.hpp"

using namespace mnemo;
using namespace std::chrono_literals;
using namespace orders;

namespace {

// Stands between the sagas and the inventory registry: refuses the
// fulfilment's "take stock out" command (step 5) with a full stash while
// `*refusals` > 0, as a busy inventory does; forwards everything else.
caf::behavior busy_inventory(caf::event_based_actor* self, caf::actor stock,
                             std::shared_ptr<int> refusals) {
  return {[=](runtime::route_atom, std::string& id,
              caf::message& msg) -> caf::result<caf::message> {
    if (*refusals > 0 &&
        msg.match_elements<actors::command_atom, std::string,
                           inventory::command>()) {
      auto& command_id = msg.get_as<std::string>(1);
      const std::string take_stock = "/5/do";
      if (command_id.size() > take_stock.size() &&
          command_id.compare(command_id.size() - take_stock.size(),
                             take_stock.size(), take_stock) == 0) {
        --*refusals;
        return runtime::make_error(runtime::errc::stash_overflow,
                                   "test: the inventory's stash is full");
      }
    }
    return self->delegate(stock, runtime::route_atom::value, std::move(id),
                          std::move(msg));
  }};
}

struct fulfilment_fixture : actors::aggregate_fixture<order> {
  std::shared_ptr<int64_t> clock = std::make_shared<int64_t>(1'000'000);
  std::shared_ptr<std::set<std::string>> declined =
      std::make_shared<std::set<std::string>>();
  caf::actor orders_reg;
  caf::actor stock;
  caf::actor payments;
  caf::actor shipments;
  caf::actor sagas_reg;
  std::vector<caf::actor> helpers;
  /// How many more "take stock out" commands the inventory refuses.
  std::shared_ptr<int> take_stock_refusals = std::make_shared<int>(0);

  explicit fulfilment_fixture(bool with_gateway = true) {
    mnemo::actors::register_types<inventory>(registry());
    mnemo::actors::register_types<payment>(registry());
    mnemo::actors::register_types<shipment>(registry());
    sagas::register_types(registry());
    orders_reg = spawn_registry();
    stock =
        actors::spawn_aggregate_registry<inventory>(system(), context(), {});
    payments =
        actors::spawn_aggregate_registry<payment>(system(), context(), {});
    shipments =
        actors::spawn_aggregate_registry<shipment>(system(), context(), {});
    auto busy = system().spawn(busy_inventory, stock, take_stock_refusals);
    helpers.push_back(busy);
    sagas::saga_context ctx;
    ctx.journal = &journal();
    ctx.registry = &registry();
    ctx.completions = context().completions;
    ctx.targets = {{order::type_name, orders_reg},
                   {inventory::type_name, busy},
                   {payment::type_name, payments},
                   {shipment::type_name, shipments}};
    auto now = clock;
    ctx.wall_ms = [now] { return *now; };
    sagas_reg = sagas::spawn_saga_registry<fulfilment>(system(), ctx, {});
    actors::projection_context pctx{&journal(), context().completions,
                                    event_bus()};
    std::vector<actors::projection_spec> specs{fulfilment_trigger(registry()),
                                               fulfilment_router()};
    if (with_gateway) {
      gateway_options g;
      auto no = declined;
      g.decide = [no](const std::string& id) { return no->count(id) > 0; };
      specs.push_back(payment_gateway(payments, g));
    }
    for (auto& spec : specs) {
      auto p = actors::spawn_projection(system(), pctx, spec);
      BOOST_REQUIRE(p);
      helpers.push_back(*p);
    }
    helpers.push_back(sagas::spawn_saga_starter<fulfilment>(
        system(), journal(), *context().completions, sagas_reg, event_bus()));
    helpers.push_back(sagas::spawn_saga_inbox<fulfilment>(
        system(), journal(), *context().completions, sagas_reg, event_bus()));
    run();
  }

  ~fulfilment_fixture() {
    for (auto& a : helpers)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    for (auto& a : {sagas_reg, stock, payments, shipments})
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    run();
  }

  void settle() {
    for (int i = 0; i < 10; ++i) {
      *clock += 100;
      advance(100ms);
    }
  }

  template <class A>
  typename A::state state_of(const caf::actor& reg, const std::string& id) {
    auto s =
        request<typename A::state>(reg, runtime::route_atom::value, id,
                                   caf::make_message(caf::get_atom::value));
    BOOST_REQUIRE(s);
    return *s;
  }

  std::string saga(const std::string& id) {
    auto s = request<sagas::saga_status>(
        sagas_reg, runtime::route_atom::value, id,
        caf::make_message(sagas::status_atom::value));
    return s ? s->status : runtime::describe(s.error());
  }

  std::string saga_error(const std::string& id) {
    auto s = request<sagas::saga_status>(
        sagas_reg, runtime::route_atom::value, id,
        caf::make_message(sagas::status_atom::value));
    return s ? s->error : runtime::describe(s.error());
  }

  void stock_up(const std::string& sku, int64_t n) {
    auto r = request<inventory_reply>(
        stock, runtime::route_atom::value, sku,
        actors::command_message<inventory>(add_stock{n}));
    BOOST_REQUIRE(r);
  }

  void place(const std::string& id, const std::string& sku, int64_t qty) {
    BOOST_REQUIRE(route(orders_reg, id, place_order{"carol", sku, qty, 50}));
    settle();
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(order_fulfilment)

BOOST_AUTO_TEST_CASE(a_paid_order_ships_and_completes) {
  fulfilment_fixture f;
  f.stock_up("sku-1", 10);
  f.place("o1", "sku-1", 2);
  BOOST_CHECK_EQUAL(f.saga("o1"), "completed");
  auto o = f.state_of<order>(f.orders_reg, "o1");
  BOOST_CHECK_EQUAL(to_string(o.status), "completed");
  BOOST_CHECK_EQUAL(o.tracking, "trk-o1");
  auto s = f.state_of<inventory>(f.stock, "sku-1");
  BOOST_CHECK_EQUAL(s.on_hand, 8);
  BOOST_CHECK_EQUAL(s.available(), 8);
  auto p = f.state_of<payment>(f.payments, "o1");
  BOOST_CHECK_EQUAL(to_string(p.status), "captured");
  BOOST_CHECK_EQUAL(p.amount, 100);
  BOOST_CHECK_EQUAL(to_string(f.state_of<shipment>(f.shipments, "o1").status),
                    "created");
}

BOOST_AUTO_TEST_CASE(a_declined_payment_releases_the_stock_and_cancels) {
  fulfilment_fixture f;
  f.declined->insert("o2");
  f.stock_up("sku-1", 10);
  f.place("o2", "sku-1", 3);
  BOOST_CHECK_EQUAL(f.saga("o2"), "compensated");
  auto o = f.state_of<order>(f.orders_reg, "o2");
  BOOST_CHECK_EQUAL(to_string(o.status), "cancelled");
  auto s = f.state_of<inventory>(f.stock, "sku-1");
  BOOST_CHECK_EQUAL(s.on_hand, 10);
  BOOST_CHECK_EQUAL(s.available(), 10);
  BOOST_CHECK_EQUAL(to_string(f.state_of<payment>(f.payments, "o2").status),
                    "declined");
  BOOST_CHECK(f.state_of<shipment>(f.shipments, "o2").status ==
              shipment_status::none);
}

BOOST_AUTO_TEST_CASE(missing_stock_cancels_before_any_payment) {
  fulfilment_fixture f;
  f.stock_up("sku-1", 1);
  f.place("o3", "sku-1", 5);
  BOOST_CHECK_EQUAL(f.saga("o3"), "compensated");
  BOOST_CHECK_EQUAL(to_string(f.state_of<order>(f.orders_reg, "o3").status),
                    "cancelled");
  BOOST_CHECK_EQUAL(to_string(f.state_of<payment>(f.payments, "o3").status),
                    "none");
  BOOST_CHECK_EQUAL(f.state_of<inventory>(f.stock, "sku-1").available(), 1);
}

BOOST_AUTO_TEST_CASE(a_verdict_that_never_comes_times_out_and_declines) {
  fulfilment_fixture f{false};  // no payment provider
  f.stock_up("sku-1", 10);
  f.place("o4", "sku-1", 1);
  BOOST_CHECK_EQUAL(f.saga("o4"), "running");
  BOOST_CHECK_EQUAL(to_string(f.state_of<payment>(f.payments, "o4").status),
                    "requested");
  *f.clock += 30'000;
  f.advance(30'000ms);
  f.settle();
  BOOST_CHECK_EQUAL(f.saga("o4"), "compensated");
  BOOST_CHECK_EQUAL(to_string(f.state_of<order>(f.orders_reg, "o4").status),
                    "cancelled");
  BOOST_CHECK_EQUAL(f.state_of<inventory>(f.stock, "sku-1").available(), 10);
  // The payment was declined by the compensation: a late capture fails.
  BOOST_CHECK_EQUAL(to_string(f.state_of<payment>(f.payments, "o4").status),
                    "declined");
  auto late = f.request<payment_reply>(
      f.payments, runtime::route_atom::value, std::string{"o4"},
      actors::command_message<payment>(capture_payment{}));
  BOOST_CHECK(!late);
}

// After "complete order" nothing can be undone: a "take stock out" that
// keeps failing transiently (more often than the default 5 attempts) is
// retried until it succeeds, never compensated.
BOOST_AUTO_TEST_CASE(taking_the_stock_out_outlasts_a_busy_inventory) {
  fulfilment_fixture f;
  f.stock_up("sku-1", 10);
  *f.take_stock_refusals = 12;
  f.place("o5", "sku-1", 3);
  // 12 retries, the delays doubling from 100 ms to 2 s: about 20 s.
  for (int i = 0; i < 120 && *f.take_stock_refusals > 0; ++i) {
    *f.clock += 500;
    f.advance(500ms);
  }
  for (int i = 0; i < 6; ++i) {  // the 13th attempt, at most 2.4 s later
    *f.clock += 500;
    f.advance(500ms);
  }
  f.settle();
  BOOST_CHECK_EQUAL(*f.take_stock_refusals, 0);
  BOOST_CHECK_MESSAGE(f.saga("o5") == "completed", f.saga_error("o5"));
  BOOST_CHECK_EQUAL(to_string(f.state_of<order>(f.orders_reg, "o5").status),
                    "completed");
  auto s = f.state_of<inventory>(f.stock, "sku-1");
  BOOST_CHECK_EQUAL(s.on_hand, 7);
  BOOST_CHECK_EQUAL(s.available(), 7);
  BOOST_CHECK(s.reserved.empty());
}

BOOST_AUTO_TEST_CASE(many_orders_conserve_the_stock) {
  fulfilment_fixture f;
  f.stock_up("sku-9", 20);
  for (int i = 0; i < 30; ++i) {
    auto id = "m" + std::to_string(i);
    if (i % 4 == 0) f.declined->insert(id);
    BOOST_REQUIRE(
        f.route(f.orders_reg, id, place_order{"dave", "sku-9", 1, 10}));
  }
  f.settle();
  f.settle();
  int completed = 0;
  for (int i = 0; i < 30; ++i) {
    auto st = f.saga("m" + std::to_string(i));
    BOOST_CHECK(st == "completed" || st == "compensated");
    completed += st == "completed";
  }
  auto s = f.state_of<inventory>(f.stock, "sku-9");
  // 8 declined; 20 in stock for 22 paying orders: 2 found no stock.
  BOOST_CHECK_EQUAL(completed, 20);
  BOOST_CHECK_EQUAL(s.on_hand, 0);
  BOOST_CHECK_EQUAL(s.available(), 0);
  BOOST_CHECK(s.reserved.empty());
}

BOOST_AUTO_TEST_SUITE_END()
