#include "mnemo/http/service_support.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/send.hpp>

#include <cmath>
#include <cstdio>
#include <optional>

#include "mnemo/persistence/error.hpp"
#include "mnemo/persistence/replica_log.hpp"
#include "mnemo/runtime/coordination/shard_coordinator.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/node.hpp"
#include "mnemo/runtime/supervisor.hpp"

namespace mnemo::http {

using json = nlohmann::json;

mnemo::http::response json_response(unsigned status, const json& body) {
  return {status, body.dump(), "application/json", {}};
}

std::string context_text(const caf::error& err) {
  auto& ctx = err.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0))
    return ctx.get_as<std::string>(0);
  return mnemo::runtime::describe(err);
}

mnemo::http::response runtime_error_response(const caf::error& err) {
  if (err == caf::sec::request_timeout)
    return mnemo::http::error_response(
        503, "timeout",
        "no answer in time; the outcome is unknown: retry with the same "
        "command_id");
  using mnemo::runtime::errc;
  using mnemo::runtime::is;
  if (is(err, errc::not_found))
    return mnemo::http::error_response(404, "not_found",
                                       mnemo::runtime::describe(err));
  // Refused as asked (e.g. rebuilding a projection that has no clear
  // function): nothing was done.
  if (is(err, errc::invalid_argument))
    return mnemo::http::error_response(409, "invalid_request",
                                       mnemo::runtime::describe(err));
  if (is(err, errc::owner_unavailable))
    return mnemo::http::error_response(503, "owner_unavailable",
                                       mnemo::runtime::describe(err));
  // owner_lost, and CAF's errors of a dying connection that reached us by
  // another path than cluster::route (which translates them already).
  if (mnemo::runtime::means_owner_lost(err))
    return mnemo::http::error_response(503, "owner_lost",
                                       mnemo::runtime::describe(err));
  if (is(err, errc::stash_overflow) || is(err, errc::entity_stopped) ||
      is(err, errc::restart_limit))
    return mnemo::http::error_response(503, "unavailable",
                                       mnemo::runtime::describe(err));
  using pe = mnemo::persistence::errc;
  // A replicated shard changed leaders under the command: it may have been
  // written before the leader was deposed and kept by the next one, or
  // not; a retry with the same ids reaches the new leader and settles it.
  if (is(err, pe::not_leader) || is(err, pe::stale_epoch))
    return mnemo::http::error_response(
        503, "owner_lost",
        mnemo::runtime::describe(err) +
            " (the shard's leadership changed; it may or may not have been "
            "applied: retry with the same command_id)");
  // Only a node started with an outdated member list gets here.
  if (is(err, pe::stream_moved))
    return mnemo::http::error_response(503, "stream_moved",
                                       mnemo::runtime::describe(err));
  if (is(err, pe::storage_full) || is(err, pe::journal_failed) ||
      is(err, pe::journal_closed))
    return mnemo::http::error_response(503, "storage_unavailable",
                                       mnemo::runtime::describe(err));
  return mnemo::http::error_response(500, "internal",
                                     mnemo::runtime::describe(err));
}

const char* public_status(const std::string& phase) {
  return phase == "compensating" ? "running" : phase.c_str();
}

json saga_json(const mnemo::sagas::saga_status& st) {
  json result{{"id", st.id},
              {"status", public_status(st.status)},
              {"phase", st.status}};
  if (!st.error.empty()) result["error"] = st.error;
  return result;
}

mnemo::http::response list_sagas(const mnemo::sagas::saga_index& index,
                                 mnemo::runtime::node& n,
                                 const std::string& type,
                                 const std::string& phase,
                                 const std::string& after, size_t limit,
                                 const std::string& what) {
  using mnemo::sagas::saga_phase;
  auto wanted = saga_phase::running;
  for (auto p :
       {saga_phase::running, saga_phase::compensating, saga_phase::completed,
        saga_phase::aborted, saga_phase::needs_attention})
    if (phase == to_string(p)) wanted = p;
  auto rows = index.list(n.journal(), type, wanted, after, limit);
  if (!rows)
    return mnemo::http::error_response(500, "internal",
                                       rows.error().to_string());
  json items = json::array();
  for (auto& e : *rows) {
    std::string name = to_string(e.phase());
    json item{{"id", e.id},
              {"status", public_status(name)},
              {"phase", name},
              {"step", e.step},
              {"attempt", e.attempt},
              {"started_ms", e.started_ms},
              {"updated_ms", e.updated_ms}};
    if (!e.error.empty()) item["error"] = e.error;
    items.push_back(std::move(item));
  }
  json next = nullptr;
  if (rows->size() == limit) next = rows->back().id;
  return json_response(200, json{{what, items}, {"next", next}});
}

void add_saga_gauges(mnemo::runtime::node& n,
                     const mnemo::sagas::saga_index& index,
                     const std::string& type) {
  for (auto phase : {"running", "compensating", "completed", "compensated",
                     "needs_attention"})
    n.metrics().gauge_fn(
        "mnemo_sagas", "Sagas by phase, from the saga index.",
        {{"type", type}, {"phase", phase}},
        [j = &n.journal(), index, type, phase] {
          auto counts = index.counts(*j, type);
          if (!counts) return std::nan("");
          auto i = counts->find(phase);
          return i == counts->end() ? 0.0 : static_cast<double>(i->second);
        });
}

mnemo::runtime::metric_histogram& http_latency(mnemo::runtime::node& n) {
  return n.metrics().histogram("mnemo_http_request_seconds",
                               "HTTP request durations.", {},
                               {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                0.1, 0.25, 0.5, 1, 2.5, 10});
}

void count_client_error(mnemo::runtime::node& n, const std::string& code) {
  n.metrics()
      .counter("mnemo_http_client_errors_total",
               "Requests refused before reaching an actor.", {{"code", code}})
      .inc();
}

mnemo::http::response shard_state(mnemo::runtime::node& n, uint32_t shard) {
  auto* c = n.cluster();
  auto* co = n.coordinator();
  if (!c || !c->replicated() || !co)
    return mnemo::http::error_response(
        404, "not_found",
        "this node keeps no shard logs: it is not a member of a replicated "
        "cluster");
  if (shard >= c->view().shards())
    return mnemo::http::error_response(
        404, "unknown_shard",
        "shard " + std::to_string(shard) + " does not exist (the cluster has " +
            std::to_string(c->view().shards()) + " shards)");
  std::optional<mnemo::runtime::coordination::shard_leadership> found;
  for (auto& l : co->leadership())
    if (l.shard == shard) found = l;
  if (!found)
    return mnemo::http::error_response(404, "not_a_replica",
                                       "member '" + c->self() +
                                           "' holds no replica of shard " +
                                           std::to_string(shard));
  mnemo::persistence::replica_log log{n.journal(), shard};
  auto digest = log.digest();
  if (!digest)
    return mnemo::http::error_response(500, "internal",
                                       digest.error().to_string());
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx",
                static_cast<unsigned long long>(digest->value));
  nlohmann::json history = nlohmann::json::array();
  for (auto& e : digest->epochs) history.push_back({e.epoch, e.start_position});
  return json_response(200, nlohmann::json{{"shard", shard},
                                           {"member", c->self()},
                                           {"end", digest->end},
                                           {"digest", hex},
                                           {"epochs", history},
                                           {"leading", found->leading},
                                           {"leader", found->leader},
                                           {"epoch", found->epoch}});
}

namespace {

// A shard's state asked for over HTTP, on its way to the reader actor.
struct shard_job {
  uint32_t shard;
  mnemo::http::responder reply;
};

}  // namespace
}  // namespace mnemo::http

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<mnemo::http::shard_job>)

namespace mnemo::http {

caf::actor spawn_shard_reader(mnemo::runtime::node& n) {
  auto reader = n.system().spawn<caf::detached>(
      [&n](caf::event_based_actor*) -> caf::behavior {
        return {[&n](std::shared_ptr<shard_job>& job) {
          job->reply(shard_state(n, job->shard));
        }};
      });
  n.track(reader);
  return reader;
}

void ask_shard(const caf::actor& reader, uint32_t shard,
               mnemo::http::responder reply) {
  caf::anon_send(
      reader, std::make_shared<shard_job>(shard_job{shard, std::move(reply)}));
}

mnemo::http::response health(mnemo::runtime::node& n) {
  auto& j = n.journal();
  if (auto err = j.failure())
    return json_response(
        503, json{{"status", "failed"}, {"message", err.to_string()}});
  json body{{"status", "ok"}, {"head_position", j.head_position()}};
  if (auto* c = n.cluster()) {
    body["cluster"] = json{{"node", c->self()},
                           {"members", c->members().size()},
                           {"shards", c->view().shards()},
                           {"connected", c->connected()},
                           {"transport", c->transport()}};
    if (c->replicated()) {
      // Which shards this member leads, and how many have no leader now.
      std::vector<uint32_t> leading;
      size_t leaderless = 0;
      for (uint32_t s = 0; s < c->view().shards(); ++s) {
        auto l = c->leader_of(s);
        if (l == c->self()) leading.push_back(s);
        leaderless += l.empty() ? 1 : 0;
      }
      body["cluster"]["replicated"] = true;
      body["cluster"]["leading"] = leading;
      body["cluster"]["leaderless"] = leaderless;
      // Shards whose copy here does not vote yet: this member's directory
      // was replaced and they have not caught up (docs/replication.md).
      if (auto* co = n.coordinator()) {
        size_t learners = 0;
        for (auto& l : co->leadership()) {
          auto flag = mnemo::persistence::replica_log{j, l.shard}.learner();
          learners += !flag || flag->has_value() ? 1 : 0;
        }
        body["cluster"]["learners"] = learners;
        // This member's shard count differs from the cluster's map in
        // etcd: it takes no part (docs/coordination.md).
        if (auto differs = co->shard_map_error(); !differs.empty())
          body["cluster"]["shard_map_error"] = differs;
      }
    }
  }
  return json_response(200, body);
}

mnemo::http::response metrics(mnemo::runtime::node& n) {
  return {200, n.metrics().render(), "text/plain; version=0.0.4", {}};
}

}  // namespace mnemo::http
