#include "bank_service.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <nlohmann/json.hpp>

#include "mnemo/http/admin.hpp"
#include "mnemo/http/service_support.hpp"
#include "account.hpp"
#include "balances.hpp"
#include "mnemo/actors/aggregate_registry.hpp"
#include "mnemo/actors/projection.hpp"
#include "mnemo/actors/remote_aggregate.hpp"
#include "mnemo/runtime/cluster.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/node.hpp"
#include "mnemo/sagas/remote_saga.hpp"
#include "mnemo/sagas/saga.hpp"
#include "mnemo/sagas/saga_index.hpp"
#include "mnemo/sagas/service_builder.hpp"
#include "transfer.hpp"

namespace bank {
namespace {

using json = nlohmann::json;
using mnemo::runtime::route_atom;

/// A request on its way from an HTTP thread to the gateway actor.
struct job {
  api::operation op;
  mnemo::http::responder reply;
  std::chrono::steady_clock::time_point started;
  mnemo::runtime::metric_histogram* latency;
};
using job_ptr = std::shared_ptr<job>;

}  // namespace
}  // namespace bank

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(bank::job_ptr)

namespace bank {
namespace {

using namespace mnemo::http;

// Maps an actor's error to the HTTP answer.
mnemo::http::response error_of(const caf::error& err) {
  if (err.category() == caf::atom("bank")) {
    auto code = static_cast<account_errc>(err.code());
    unsigned status = 500;
    switch (code) {
      case account_errc::unknown_account:
        status = 404;
        break;
      case account_errc::invalid_amount:
        status = 400;
        break;
      case account_errc::already_exists:
      case account_errc::insufficient_funds:
      case account_errc::account_closed:
        status = 409;
        break;
      default:
        return mnemo::http::error_response(500, "internal", context_text(err));
    }
    return mnemo::http::error_response(status, to_string(code), context_text(err));
  }
  return runtime_error_response(err);
}

void respond(const job_ptr& j, mnemo::http::response res) {
  j->latency->observe(std::chrono::duration<double>(
                          std::chrono::steady_clock::now() - j->started)
                          .count());
  j->reply(std::move(res));
}

/// Where `GET /cluster/balances` looks: the totals of the cluster-wide
/// model, and its projections by source (a member id, or "shard/<n>" in a
/// replicated cluster).
struct cluster_read_side {
  std::function<mnemo::persistence::expected<totals_row>()> totals;
  std::vector<std::pair<std::string, std::string>> sources;
};

// Answers `GET /cluster/balances`: the statuses of the cluster-wide
// projections (through the supervisor), then the model's totals.
void cluster_totals(caf::event_based_actor* self, const caf::actor& projections,
                    std::shared_ptr<const cluster_read_side> side,
                    std::chrono::milliseconds timeout, const job_ptr& j) {
  auto sources = std::make_shared<json>(json::object());
  auto left = std::make_shared<size_t>(side->sources.size());
  auto finish = [j, side, sources] {
    auto totals = side->totals();
    if (!totals)
      return respond(j, mnemo::http::error_response(500, "internal",
                                              totals.error().to_string()));
    respond(j, json_response(200, json{{"accounts", totals->accounts},
                                       {"total", totals->total},
                                       {"sources", *sources}}));
  };
  for (auto& [member, name] : side->sources)
    self->request(projections, timeout, route_atom::value, name,
                  caf::make_message(mnemo::actors::status_atom::value))
        .then(
            [=, member = member](mnemo::actors::projection_status& st) {
              (*sources)[member] = json{{"offset", st.offset},
                                        {"head", st.head},
                                        {"lag", st.lag},
                                        {"available", st.available}};
              if (--*left == 0) finish();
            },
            [=, member = member](caf::error& err) {
              (*sources)[member] =
                  json{{"error", mnemo::runtime::describe(err)}};
              if (--*left == 0) finish();
            });
}

// The actor between the HTTP threads and the registries: every command
// becomes one pipelined request; the reply goes back through the
// responder (which posts to the connection's strand).
caf::behavior gateway(caf::event_based_actor* self, caf::actor accounts,
                      caf::actor transfers, caf::actor projections,
                      std::vector<std::string> projection_names,
                      std::shared_ptr<const cluster_read_side> cluster_side,
                      std::chrono::milliseconds timeout) {
  auto command = [=](job_ptr j, const std::string& id, account::command cmd,
                     const std::string& command_id, unsigned status,
                     std::function<json(int64_t)> body) {
    self->request(
            accounts, timeout, route_atom::value, id,
            mnemo::actors::command_message<account>(std::move(cmd), command_id))
        .then(
            [j, status, body](account_reply& r) {
              respond(j, json_response(status, body(r.balance)));
            },
            [j](caf::error& err) { respond(j, error_of(err)); });
  };
  return {[=, names = std::move(projection_names)](job_ptr& j) {
    std::visit(
        [&](auto& op) {
          using T = std::decay_t<decltype(op)>;
          if constexpr (std::is_same_v<T, api::open_account>) {
            command(j, op.id, bank::open_account{op.owner}, {}, 201,
                    [op](int64_t balance) {
                      return json{{"id", op.id},
                                  {"owner", op.owner},
                                  {"balance", balance},
                                  {"open", true},
                                  {"version", 1}};
                    });
          } else if constexpr (std::is_same_v<T, api::move_money>) {
            account::command cmd = bank::withdraw{op.amount};
            if (op.deposit) cmd = bank::deposit{op.amount};
            command(j, op.id, std::move(cmd), op.command_id, 200,
                    [id = op.id](int64_t balance) {
                      return json{{"id", id}, {"balance", balance}};
                    });
          } else if constexpr (std::is_same_v<T, api::close_account>) {
            command(j, op.id, bank::close_account{}, op.command_id, 200,
                    [id = op.id](int64_t balance) {
                      return json{
                          {"id", id}, {"balance", balance}, {"open", false}};
                    });
          } else if constexpr (std::is_same_v<T, api::get_account>) {
            self->request(accounts, timeout, route_atom::value, op.id,
                          caf::make_message(mnemo::actors::state_atom::value))
                .then(
                    [j, id = op.id](account_state& s, uint64_t version) {
                      if (!s.exists)
                        return respond(j, mnemo::http::error_response(
                                              404, "unknown_account",
                                              "no account '" + id + "'"));
                      respond(j,
                              json_response(200, json{{"id", id},
                                                      {"owner", s.owner},
                                                      {"balance", s.balance},
                                                      {"open", s.open},
                                                      {"version", version}}));
                    },
                    [j](caf::error& err) { respond(j, error_of(err)); });
          } else if constexpr (std::is_same_v<T, api::start_transfer>) {
            self->request(
                    transfers, timeout, route_atom::value, op.id,
                    caf::make_message(mnemo::sagas::start_atom::value,
                                      transfer_data{op.from, op.to, op.amount}))
                .then(
                    [j](mnemo::sagas::saga_status& st) {
                      respond(j, json_response(202, saga_json(st)));
                    },
                    [j](caf::error& err) { respond(j, error_of(err)); });
          } else if constexpr (std::is_same_v<T, api::get_transfer>) {
            self->request(transfers, timeout, route_atom::value, op.id,
                          caf::make_message(mnemo::sagas::status_atom::value))
                .then(
                    [j, id = op.id](mnemo::sagas::saga_status& st) {
                      if (st.status == "new")
                        return respond(j, mnemo::http::error_response(
                                              404, "unknown_transfer",
                                              "no transfer '" + id + "'"));
                      respond(j, json_response(200, saga_json(st)));
                    },
                    [j](caf::error& err) { respond(j, error_of(err)); });
          } else if constexpr (std::is_same_v<T, api::get_cluster_totals>) {
            if (cluster_side->sources.empty())
              return respond(
                  j, mnemo::http::error_response(404, "not_found",
                                           "this node runs alone: GET "
                                           "/balances has every account"));
            cluster_totals(self, projections, cluster_side, timeout, j);
          } else if constexpr (std::is_same_v<T, api::list_projections> ||
                               std::is_same_v<T, api::manage_projection> ||
                               std::is_same_v<T, api::list_dead_letters> ||
                               std::is_same_v<T, api::manage_dead_letter>) {
            run_admin(self, projections, names, timeout,
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
  // A replicated cluster: this member's journal also holds the shards it
  // only follows, and records no majority holds yet, so the read side
  // follows the shards' committed logs instead (`cluster_model`, the saga
  // index as one copy per shard).
  bool replicated = false;
  balances_model model;
  // Every member's accounts, followed from every member's journal.
  balances_model cluster_model;
  mnemo::sagas::saga_index sagas;
  caf::actor accounts;
  caf::actor transfers;
  caf::actor projections;
  std::vector<std::string> projection_names;
  caf::actor gateway;
  /// Answers GET /admin/shards/{n} off the HTTP threads.
  caf::actor shard_reader;
  mnemo::runtime::metric_histogram* latency = nullptr;

  explicit impl(mnemo::runtime::node& n)
      : node(&n),
        model(n.registry()),
        cluster_model(n.registry(), true),
        sagas(n.registry()) {}

  mnemo::http::response list(const api::list_transfers& op) {
    return list_sagas(sagas, *node, transfer::type_name, op.phase, op.after,
                      op.limit, "transfers");
  }

  // Queries of the read model and the node, answered on the I/O thread.
  mnemo::http::response query(const api::operation& op) {
    auto& j = node->journal();
    if (auto* l = std::get_if<api::list_transfers>(&op)) return list(*l);
    // Replicated: every account, committed only.
    auto& m = replicated ? cluster_model : model;
    if (auto* b = std::get_if<api::get_balance>(&op)) {
      auto row = m.balance(j, b->id);
      if (!row)
        return mnemo::http::error_response(500, "internal", row.error().to_string());
      if (!*row)
        return mnemo::http::error_response(
            404, "unknown_account",
            "no account '" + b->id + "' in the balances read model");
      auto& r = **row;
      return json_response(200, json{{"id", b->id},
                                     {"owner", r.owner},
                                     {"balance", r.balance},
                                     {"open", r.open}});
    }
    if (std::holds_alternative<api::get_totals>(op)) {
      auto totals = m.totals(j);
      if (!totals)
        return mnemo::http::error_response(500, "internal",
                                     totals.error().to_string());
      return json_response(
          200, json{{"accounts", totals->accounts}, {"total", totals->total}});
    }
    if (std::holds_alternative<api::get_health>(op)) return health(*node);
    return metrics(*node);
  }
};

std::unique_ptr<service> service::start(mnemo::runtime::node& n,
                                        service_options opts,
                                        std::string& error) {
  auto ptr = std::make_unique<impl>(n);
  ptr->opts = opts;
  // The account registry and the transfer sagas, with the node's settings;
  // in a cluster, routers: an entity another member owns is served there.
  mnemo::sagas::service_builder builder{n};
  ptr->accounts = builder.aggregate<account>();
  ptr->transfers = builder.saga<transfer>(transfer::define());
  auto* cluster = n.cluster();
  ptr->replicated = cluster && cluster->replicated();
  std::vector<mnemo::actors::projection_spec> specs;
  if (ptr->replicated) {
    // The saga index of every shard's committed transfers (its rows are
    // keyed by saga, whose events are all in one shard: the copies never
    // write the same row).
    specs = mnemo::actors::cluster_wide(ptr->sagas.projection(), cluster);
  } else {
    specs = {ptr->model.projection(), ptr->sagas.projection()};
  }
  auto side = std::make_shared<cluster_read_side>();
  side->totals = [model = ptr->cluster_model, &j = n.journal()] {
    return model.totals(j);
  };
  // Alone, a node's own balances are all there is: no second model. In a
  // replicated cluster the copies follow the shards' committed logs, not
  // the members' journals (each holds the shards it replicates).
  if (cluster)
    for (auto& spec : mnemo::actors::cluster_wide(
             ptr->cluster_model.projection(), cluster)) {
      auto member = spec.source.empty() ? cluster->self() : spec.source;
      side->sources.emplace_back(member, spec.name);
      specs.push_back(std::move(spec));
    }
  for (auto& spec : specs) {
    spec.options.write_interval = opts.read_model_interval;
    builder.projection(std::move(spec));
  }
  // Resumes unfinished transfers (alone: now; replicated: per shard as
  // this member comes to lead it) and supervises the projections.
  auto built = builder.build();
  if (!built) {
    error = mnemo::runtime::describe(built.error());
    return nullptr;
  }
  ptr->projections = built->projections;
  ptr->projection_names = built->projection_names;
  add_saga_gauges(n, ptr->sagas, transfer::type_name);
  ptr->shard_reader = spawn_shard_reader(n);
  ptr->gateway =
      n.system().spawn(gateway, ptr->accounts, ptr->transfers, ptr->projections,
                       ptr->projection_names, side, opts.request_timeout);
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
  if (std::holds_alternative<api::list_transfers>(op) ||
      std::holds_alternative<api::get_balance>(op) ||
      std::holds_alternative<api::get_totals>(op) ||
      std::holds_alternative<api::get_health>(op) ||
      std::holds_alternative<api::get_metrics>(op))
    return reply(impl_->query(op));
  auto j = std::make_shared<job>(job{std::move(op), std::move(reply),
                                     std::chrono::steady_clock::now(),
                                     impl_->latency});
  caf::anon_send(impl_->gateway, std::move(j));
}

}  // namespace bank
