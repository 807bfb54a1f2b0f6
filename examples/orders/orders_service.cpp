#include "orders_service.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <nlohmann/json.hpp>

#include "mnemo/http/admin.hpp"
#include "mnemo/http/service_support.hpp"
#include "fulfilment.hpp"
#include "inventory.hpp"
#include "mnemo/actors/aggregate_registry.hpp"
#include "mnemo/actors/remote_aggregate.hpp"
#include "mnemo/actors/projection.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/cluster.hpp"
#include "mnemo/runtime/node.hpp"
#include "mnemo/sagas/saga.hpp"
#include "mnemo/sagas/saga_inbox.hpp"
#include "mnemo/sagas/saga_index.hpp"
#include "mnemo/sagas/service_builder.hpp"
#include "mnemo/sagas/remote_saga.hpp"
#include "mnemo/sagas/saga_trigger.hpp"
#include "order.hpp"
#include "order_summary.hpp"
#include "payment.hpp"
#include "payment_gateway.hpp"
#include "shipment.hpp"

namespace orders {
namespace {

/// A request on its way from an HTTP thread to the gateway actor.
struct job {
  api::operation op;
  mnemo::http::responder reply;
  std::chrono::steady_clock::time_point started;
  mnemo::runtime::metric_histogram* latency;
};
using job_ptr = std::shared_ptr<job>;

}  // namespace
}  // namespace orders

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(orders::job_ptr)

namespace orders {
namespace {

using namespace mnemo::http;
using json = nlohmann::json;
using mnemo::runtime::route_atom;

// Maps an actor's error to the HTTP answer.
mnemo::http::response error_of(const caf::error& err) {
  if (err.category() != error_category) return runtime_error_response(err);
  auto code = static_cast<errc>(err.code());
  unsigned status = 409;
  switch (code) {
    case errc::unknown_order:
    case errc::unknown_sku:
      status = 404;
      break;
    case errc::invalid_input:
      status = 400;
      break;
    case errc::already_exists:
    case errc::invalid_state:
    case errc::insufficient_stock:
    case errc::payment_declined:
    case errc::not_captured:
      break;
    default:
      return mnemo::http::error_response(500, "internal", context_text(err));
  }
  return mnemo::http::error_response(status, to_string(code), context_text(err));
}

void respond(const job_ptr& j, mnemo::http::response res) {
  j->latency->observe(std::chrono::duration<double>(
                          std::chrono::steady_clock::now() - j->started)
                          .count());
  j->reply(std::move(res));
}

json summary_json(const order_summary& s) {
  json result{{"id", s.id},           {"customer", s.customer},
              {"sku", s.sku},         {"quantity", s.quantity},
              {"amount", s.amount},   {"status", s.status},
              {"payment", s.payment}, {"placed_at_ms", s.placed_at_ms}};
  if (!s.tracking.empty()) result["tracking"] = s.tracking;
  if (!s.reason.empty()) result["reason"] = s.reason;
  return result;
}

struct registries {
  caf::actor orders;
  caf::actor stock;
  caf::actor fulfilments;
  caf::actor projections;
  std::vector<std::string> projection_names;
};

// The actor between the HTTP threads and the registries: every command
// becomes one pipelined request; the reply goes back through the
// responder (which posts to the connection's strand).
caf::behavior gateway(caf::event_based_actor* self, registries to,
                      std::chrono::milliseconds timeout) {
  return {[=](job_ptr& j) {
    auto fail = [j](caf::error& err) { respond(j, error_of(err)); };
    std::visit(
        [&](auto& op) {
          using T = std::decay_t<decltype(op)>;
          if constexpr (std::is_same_v<T, api::place_order>) {
            // One command id per order: placing it again answers the
            // original result and places nothing.
            self->request(to.orders, timeout, route_atom::value, op.id,
                          mnemo::actors::command_message<order>(
                              orders::place_order{op.customer, op.sku,
                                                  op.quantity, op.unit_price},
                              "place"))
                .then(
                    [j, op](order_reply&) {
                      respond(j, json_response(
                                     202, json{{"id", op.id},
                                               {"status", "placed"},
                                               {"amount",
                                                op.quantity * op.unit_price}}));
                    },
                    fail);
          } else if constexpr (std::is_same_v<T, api::cancel_order>) {
            self->request(to.orders, timeout, route_atom::value, op.id,
                          mnemo::actors::command_message<order>(
                              orders::cancel_order{"cancelled by the customer"},
                              op.command_id))
                .then(
                    [j, id = op.id](order_reply& r) {
                      respond(j,
                              json_response(
                                  200, json{{"id", id}, {"status", r.status}}));
                    },
                    fail);
          } else if constexpr (std::is_same_v<T, api::add_stock>) {
            self->request(to.stock, timeout, route_atom::value, op.sku,
                          mnemo::actors::command_message<inventory>(
                              orders::add_stock{op.quantity}, op.command_id))
                .then(
                    [j, sku = op.sku](inventory_reply& r) {
                      respond(j, json_response(
                                     200, json{{"sku", sku},
                                               {"on_hand", r.on_hand},
                                               {"available", r.available}}));
                    },
                    fail);
          } else if constexpr (std::is_same_v<T, api::get_stock>) {
            self->request(to.stock, timeout, route_atom::value, op.sku,
                          caf::make_message(mnemo::actors::state_atom::value))
                .then(
                    [j, sku = op.sku](inventory_state& s, uint64_t version) {
                      if (!s.exists)
                        return respond(j, mnemo::http::error_response(
                                              404, "unknown_sku",
                                              "no stock of '" + sku + "'"));
                      respond(j,
                              json_response(
                                  200, json{{"sku", sku},
                                            {"on_hand", s.on_hand},
                                            {"available", s.available()},
                                            {"reservations", s.reserved.size()},
                                            {"version", version}}));
                    },
                    fail);
          } else if constexpr (std::is_same_v<T, api::get_fulfilment>) {
            self->request(to.fulfilments, timeout, route_atom::value, op.id,
                          caf::make_message(mnemo::sagas::status_atom::value))
                .then(
                    [j, id = op.id](mnemo::sagas::saga_status& st) {
                      if (st.status == "new")
                        return respond(
                            j, mnemo::http::error_response(
                                   404, "unknown_fulfilment",
                                   "no fulfilment of order '" + id + "'"));
                      respond(j, json_response(200, saga_json(st)));
                    },
                    fail);
          } else if constexpr (std::is_same_v<T, api::list_projections> ||
                               std::is_same_v<T, api::manage_projection> ||
                               std::is_same_v<T, api::list_dead_letters> ||
                               std::is_same_v<T, api::manage_dead_letter>) {
            run_admin(self, to.projections, to.projection_names, timeout,
                      mnemo::http::admin_api::operation{op},
                      [j](mnemo::http::response res) { respond(j, std::move(res)); });
          } else {
            respond(j, mnemo::http::error_response(500, "internal",
                                             "not a gateway operation"));
          }
        },
        j->op);
  }};
}

}  // namespace

struct service::impl {
  mnemo::runtime::node* node = nullptr;
  service_options opts;
  mnemo::sagas::saga_index sagas;
  registries to;
  caf::actor gateway;
  /// Answers GET /admin/shards/{n} off the HTTP threads.
  caf::actor shard_reader;
  mnemo::runtime::metric_histogram* latency = nullptr;

  explicit impl(mnemo::runtime::node& n) : node(&n), sagas(n.registry()) {}

  // Queries of the read models and the node, answered on the I/O thread.
  std::optional<mnemo::http::response> query(const api::operation& op) {
    auto& j = node->journal();
    if (auto* g = std::get_if<api::get_order>(&op)) {
      auto row = get_order(j, g->id);
      if (!row)
        return mnemo::http::error_response(500, "internal", row.error().to_string());
      if (!*row || (*row)->status.empty())
        return mnemo::http::error_response(
            404, "unknown_order",
            "no order '" + g->id + "' in the order summary read model");
      return json_response(200, summary_json(**row));
    }
    if (auto* l = std::get_if<api::list_orders>(&op)) {
      std::optional<std::string> status;
      if (!l->status.empty()) status = l->status;
      auto rows = list_orders(j, status, l->after, l->limit);
      if (!rows)
        return mnemo::http::error_response(500, "internal", rows.error().to_string());
      json items = json::array();
      for (auto& r : *rows) items.push_back(summary_json(r));
      json next = nullptr;
      if (rows->size() == l->limit) next = rows->back().id;
      return json_response(200, json{{"orders", items}, {"next", next}});
    }
    if (std::holds_alternative<api::get_totals>(op)) {
      auto totals = order_totals(j);
      if (!totals)
        return mnemo::http::error_response(500, "internal",
                                     totals.error().to_string());
      json by_status = json::object();
      for (auto& [status, n] : totals->by_status) by_status[status] = n;
      return json_response(
          200, json{{"orders", by_status}, {"revenue", totals->revenue}});
    }
    if (auto* l = std::get_if<api::list_fulfilments>(&op))
      return list_sagas(sagas, *node, fulfilment::type_name, l->phase, l->after,
                        l->limit, "fulfilments");
    if (std::holds_alternative<api::get_health>(op)) return health(*node);
    if (std::holds_alternative<api::get_metrics>(op)) return metrics(*node);
    return std::nullopt;
  }
};

std::unique_ptr<service> service::start(mnemo::runtime::node& n,
                                        service_options opts,
                                        std::string& error) {
  auto ptr = std::make_unique<impl>(n);
  ptr->opts = opts;
  auto& to = ptr->to;
  // The aggregates and the fulfilment sagas, with the node's settings; in a
  // cluster, routers: an entity whose shard another member leads is served
  // by that member. The sagas, started and decided by events, command the
  // four aggregates.
  mnemo::sagas::service_builder builder{n};
  to.orders = builder.aggregate<order>();
  to.stock = builder.aggregate<inventory>();
  auto payments = builder.aggregate<payment>();
  builder.aggregate<shipment>();
  mnemo::sagas::saga_wiring by_events;
  by_events.event_driven = true;
  to.fulfilments = builder.saga<fulfilment>(
      fulfilment::define(opts.payment_timeout), by_events);
  auto* cluster = n.cluster();
  gateway_options pay;
  pay.failure_rate = opts.payment_failure_rate;
  pay.seed = opts.payment_seed;
  std::vector<mnemo::actors::projection_spec> specs;
  if (cluster) {
    // Every read model, the trigger, the router and the gateway follow the
    // committed shard logs, one copy per shard on every member (a
    // member's journal holds the shards it replicates, and on a leader
    // records no majority holds yet). The copies of every member start
    // each fulfilment and route each verdict: the sagas recognise the
    // repeats (docs/orders-node.md, "Replicated").
    auto sender = spawn_gateway_sender(n.system(), payments);
    n.track(sender);
    auto add = [&specs](std::vector<mnemo::actors::projection_spec> copies) {
      for (auto& c : copies) specs.push_back(std::move(c));
    };
    add(mnemo::actors::cluster_wide(order_summary_projection(n.registry()),
                                    cluster));
    add(mnemo::actors::cluster_wide(fulfilment_trigger(n.registry()), cluster));
    add(fulfilment_routers(cluster));
    add(mnemo::actors::cluster_wide(payment_gateway(sender, pay), cluster));
    add(mnemo::actors::cluster_wide(ptr->sagas.projection(), cluster));
  } else {
    specs = {order_summary_projection(n.registry()),
             fulfilment_trigger(n.registry()), fulfilment_router(),
             payment_gateway(payments, pay), ptr->sagas.projection()};
  }
  for (auto& spec : specs) builder.projection(std::move(spec));
  // Resumes unfinished fulfilments (alone: now; replicated: per shard as
  // this member comes to lead it) and supervises the projections.
  auto built = builder.build();
  if (!built) {
    error = mnemo::runtime::describe(built.error());
    return nullptr;
  }
  to.projections = built->projections;
  to.projection_names = built->projection_names;
  add_saga_gauges(n, ptr->sagas, fulfilment::type_name);
  ptr->shard_reader = spawn_shard_reader(n);
  ptr->gateway = n.system().spawn(gateway, to, opts.request_timeout);
  n.track(ptr->gateway);
  ptr->latency = &http_latency(n);
  return std::unique_ptr<service>{new service(std::move(ptr))};
}

service::service(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)) {}

service::~service() = default;

void service::handle(mnemo::http::request&& req, mnemo::http::responder reply) {
  auto parsed =
      api::parse(req.method, req.target, req.body, impl_->opts.limits);
  if (auto* err = std::get_if<api::client_error>(&parsed)) {
    count_client_error(*impl_->node, err->code);
    return reply(mnemo::http::error_response(err->status, err->code, err->message));
  }
  auto& op = std::get<api::operation>(parsed);
  if (auto* g = std::get_if<api::get_shard>(&op))
    return ask_shard(impl_->shard_reader, g->shard, std::move(reply));
  if (auto answer = impl_->query(op)) return reply(std::move(*answer));
  auto j = std::make_shared<job>(job{std::move(op), std::move(reply),
                                     std::chrono::steady_clock::now(),
                                     impl_->latency});
  caf::anon_send(impl_->gateway, std::move(j));
}

}  // namespace orders
