#pragma once

// Pieces the example services share: JSON answers, the HTTP answer for a
// runtime error, saga listings from the saga index, and the saga gauges.

#include <functional>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <nlohmann/json.hpp>

#include "mnemo/actors/projection.hpp"
#include "mnemo/http/server.hpp"
#include "mnemo/runtime/cluster.hpp"
#include "mnemo/runtime/console.hpp"
#include "mnemo/runtime/metrics.hpp"
#include "mnemo/runtime/node.hpp"
#include "mnemo/sagas/saga.hpp"
#include "mnemo/sagas/saga_index.hpp"

namespace mnemo::http {

mnemo::http::response json_response(unsigned status,
                                    const nlohmann::json& body);

/// Returns the message an error carries as its context, or its description.
std::string context_text(const caf::error& err);

/// The HTTP answer for an error that is not a business rejection: 503
/// `timeout` (outcome unknown), 404 `not_found`, 503 `owner_lost` (also for
/// CAF's errors of a lost connection or actor, see
/// `runtime::means_owner_lost`), 503 `owner_unavailable`, 503 `unavailable`
/// (stopped or overloaded entity), 503 `stream_moved`, 503
/// `storage_unavailable`, else 500 `internal` with the error named
/// ("system:unexpected_message", never "system:5").
mnemo::http::response runtime_error_response(const caf::error& err);

/// The status a client sees for saga phase `phase`: a compensating saga is
/// still "running".
const char* public_status(const std::string& phase);

/// `{"id","status","phase","error"?}` of a saga.
nlohmann::json saga_json(const mnemo::sagas::saga_status& st);

/// Answers `GET /<what>?status=PHASE&after=ID&limit=N` from `index`:
/// `{"<what>":[...],"next":ID|null}`.
mnemo::http::response list_sagas(const mnemo::sagas::saga_index& index,
                                 mnemo::runtime::node& n,
                                 const std::string& type,
                                 const std::string& phase,
                                 const std::string& after, size_t limit,
                                 const std::string& what);

/// Publishes `mnemo_sagas{type,phase}` gauges of saga type `type`, read
/// from `index` when scraped.
void add_saga_gauges(mnemo::runtime::node& n,
                     const mnemo::sagas::saga_index& index,
                     const std::string& type);

/// The histogram of HTTP request durations (`mnemo_http_request_seconds`).
mnemo::runtime::metric_histogram& http_latency(mnemo::runtime::node& n);

/// Counts a request refused before reaching an actor
/// (`mnemo_http_client_errors_total{code}`).
void count_client_error(mnemo::runtime::node& n, const std::string& code);

/// Answers `GET /admin/shards/{n}`: this member's replica of shard `n` in
/// a replicated cluster: `{"shard","member","end","digest","epochs":
/// [[epoch,start],...],"leading","leader","epoch"}` (`digest`:
/// `replica_log::digest` as 16 hex digits; replicas with the same end and
/// digest hold the same log). 404 `not_found` if the node is not in a
/// replicated cluster, `unknown_shard`, `not_a_replica`. Reads the whole
/// log.
mnemo::http::response shard_state(mnemo::runtime::node& n, uint32_t shard);

/// Spawns (and has `n` track) the actor that answers `ask_shard` with
/// `shard_state`, off the HTTP threads: reading a whole log must not hold
/// up the other requests of a connection's I/O thread. One at a time.
caf::actor spawn_shard_reader(mnemo::runtime::node& n);

/// Has `reader` answer `GET /admin/shards/{shard}` through `reply`.
void ask_shard(const caf::actor& reader, uint32_t shard,
               mnemo::http::responder reply);

/// Answers `GET /health` and `GET /metrics`.
mnemo::http::response health(mnemo::runtime::node& n);
mnemo::http::response metrics(mnemo::runtime::node& n);

}  // namespace mnemo::http
