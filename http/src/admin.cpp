#include "mnemo/http/admin.hpp"

#include <algorithm>
#include <memory>

#include <caf/event_based_actor.hpp>
#include <nlohmann/json.hpp>

#include "mnemo/actors/projection.hpp"
#include "mnemo/http/service_support.hpp"
#include "mnemo/runtime/entity_registry.hpp"
#include "mnemo/runtime/error.hpp"

namespace mnemo::http {
namespace {

using json = nlohmann::json;
using mnemo::runtime::route_atom;
using done_fn = std::function<void(mnemo::http::response)>;

json status_json(const mnemo::actors::projection_status& st) {
  json result{{"name", st.name},     {"offset", st.offset},
              {"head", st.head},     {"lag", st.lag},
              {"paused", st.paused}, {"attempts", st.attempts}};
  if (!st.last_error.empty()) result["last_error"] = st.last_error;
  return result;
}

// Asks projection `name` (through the supervisor) for its status.
void status_of(caf::event_based_actor* self, const caf::actor& projections,
               std::chrono::milliseconds timeout, const std::string& name,
               std::function<void(caf::expected<json>)> then) {
  self->request(projections, timeout, route_atom::value, name,
                caf::make_message(mnemo::actors::status_atom::value))
      .then(
          [then](mnemo::actors::projection_status& st) {
            then(status_json(st));
          },
          [then](caf::error& err) { then(std::move(err)); });
}

// Asks every projection of `names` for its status; `then` gets them all
// (an entry with "error" for one that did not answer), in answer order.
void statuses_of(caf::event_based_actor* self, const caf::actor& projections,
                 std::chrono::milliseconds timeout,
                 const std::vector<std::string>& names,
                 std::function<void(json)> then) {
  auto all = std::make_shared<json>(json::array());
  if (names.empty()) return then(*all);
  auto left = std::make_shared<size_t>(names.size());
  for (auto& name : names)
    status_of(self, projections, timeout, name,
              [then, all, left, name](caf::expected<json> st) {
                all->push_back(
                    st ? *st
                       : json{{"name", name},
                              {"error", mnemo::runtime::describe(st.error())}});
                if (--*left == 0) then(std::move(*all));
              });
}

}  // namespace

void run_admin(caf::event_based_actor* self, const caf::actor& projections,
               const std::vector<std::string>& names,
               std::chrono::milliseconds timeout,
               const mnemo::http::admin_api::operation& op, done_fn done) {
  namespace admin = mnemo::http::admin_api;
  auto fail = [done](caf::error& err) { done(runtime_error_response(err)); };
  if (std::holds_alternative<admin::list_projections>(op)) {
    statuses_of(self, projections, timeout, names, [done](json all) {
      done(json_response(200, json{{"projections", std::move(all)}}));
    });
  } else if (auto* m = std::get_if<admin::manage_projection>(&op);
             m &&
             std::find(names.begin(), names.end(), m->name) == names.end()) {
    // Not a projection: a cluster-wide read model, whose copies are named
    // `<model>@<source>` (actors::cluster_wide), is paused, resumed or
    // rebuilt as a whole.
    std::vector<std::string> copies;
    for (auto& n : names)
      if (n.size() > m->name.size() + 1 &&
          n.compare(0, m->name.size(), m->name) == 0 &&
          n[m->name.size()] == '@')
        copies.push_back(n);
    if (copies.empty())
      return done(mnemo::http::error_response(
          404, "not_found",
          "no projection or cluster-wide read model '" + m->name + "'"));
    // `op` is gone by the time the copies answer: keep the name.
    auto answer = [=, model = m->name](caf::error err) {
      if (err) return done(runtime_error_response(err));
      statuses_of(self, projections, timeout, copies, [done, model](json all) {
        done(json_response(200,
                           json{{"name", model}, {"copies", std::move(all)}}));
      });
    };
    if (m->action == "rebuild") {
      mnemo::actors::rebuild_together(self, projections, copies, timeout,
                                      answer);
    } else {
      auto msg = m->action == "pause"
                     ? caf::make_message(mnemo::actors::pause_atom::value)
                     : caf::make_message(mnemo::actors::resume_atom::value);
      auto left = std::make_shared<size_t>(copies.size());
      auto first = std::make_shared<caf::error>();
      for (auto& c : copies)
        self->request(projections, timeout, route_atom::value, c, msg)
            .then(
                [=]() {
                  if (--*left == 0) answer(*first);
                },
                [=](caf::error& err) {
                  if (!*first) *first = err;
                  if (--*left == 0) answer(*first);
                });
    }
  } else if (auto* m = std::get_if<admin::manage_projection>(&op)) {
    caf::message msg;
    if (m->action == "pause")
      msg = caf::make_message(mnemo::actors::pause_atom::value);
    else if (m->action == "resume")
      msg = caf::make_message(mnemo::actors::resume_atom::value);
    else
      msg = caf::make_message(mnemo::actors::rebuild_atom::value);
    self->request(projections, timeout, route_atom::value, m->name, msg)
        .then(
            [=, name = m->name]() {
              status_of(self, projections, timeout, name,
                        [done](caf::expected<json> st) {
                          done(st ? json_response(200, *st)
                                  : runtime_error_response(st.error()));
                        });
            },
            fail);
  } else if (auto* l = std::get_if<admin::list_dead_letters>(&op)) {
    self->request(projections, timeout, route_atom::value, l->name,
                  caf::make_message(mnemo::actors::dead_letters_atom::value,
                                    l->from, uint64_t{l->limit}))
        .then(
            [done](std::vector<mnemo::actors::dead_letter_info>& all) {
              json items = json::array();
              for (auto& d : all)
                items.push_back({{"position", d.position},
                                 {"stream", d.stream_id},
                                 {"sequence", d.sequence},
                                 {"type", d.type},
                                 {"error", d.error},
                                 {"attempts", d.attempts},
                                 {"parked_at_ms", d.parked_at_ms}});
              done(json_response(200, json{{"dead_letters", items}}));
            },
            fail);
  } else if (auto* d = std::get_if<admin::manage_dead_letter>(&op)) {
    auto pos = d->position;
    if (d->action == "drop") {
      self->request(
              projections, timeout, route_atom::value, d->name,
              caf::make_message(mnemo::actors::drop_dead_atom::value, pos))
          .then(
              [done, pos](bool existed) {
                if (!existed)
                  return done(mnemo::http::error_response(
                      404, "unknown_dead_letter",
                      "no dead letter at position " + std::to_string(pos)));
                done(json_response(200, json{{"dropped", pos}}));
              },
              fail);
    } else {
      self->request(
              projections, timeout, route_atom::value, d->name,
              caf::make_message(mnemo::actors::retry_dead_atom::value, pos))
          .then(
              [done, pos]() {
                done(json_response(200, json{{"retried", pos}}));
              },
              fail);
    }
  } else {
    // get_shard: the node answers it itself (shard_state), never here.
    done(mnemo::http::error_response(
        500, "internal", "not an operation of the projection admin"));
  }
}

}  // namespace mnemo::http
