#pragma once

// Pieces the example services share: JSON answers, the HTTP answer for a
// runtime error, saga listings from the saga index, and the saga gauges.

#include <functional>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <nlohmann/json.hpp>

#include "../http/http_server.hpp"
#include "mnemo/actors/projection.hpp"
#include "mnemo/runtime/metrics.hpp"
#include "mnemo/sagas/saga_index.hpp"

namespace mnemo::runtime {
class node;
}  // namespace mnemo::runtime

namespace examples {

httpd::response json_response(unsigned status, const nlohmann::json& body);

/// Returns the message an error carries as its context, or its description.
std::string context_text(const caf::error& err);

/// The HTTP answer for an error that is not a business rejection: 503
/// `timeout` (outcome unknown), 404 `not_found`, 503 `owner_lost` (also for
/// CAF's errors of a lost connection or actor, see
/// `runtime::means_owner_lost`), 503 `owner_unavailable`, 503 `unavailable`
/// (stopped or overloaded entity), 503 `stream_moved`, 503
/// `storage_unavailable`, else 500 `internal` with the error named
/// ("system:unexpected_message", never "system:5").
httpd::response runtime_error_response(const caf::error& err);

/// The status a client sees for saga phase `phase`: a compensating saga is
/// still "running".
const char* public_status(const std::string& phase);

/// `{"id","status","phase","error"?}` of a saga.
nlohmann::json saga_json(const mnemo::sagas::saga_status& st);

/// Answers `GET /<what>?status=PHASE&after=ID&limit=N` from `index`:
/// `{"<what>":[...],"next":ID|null}`.
httpd::response list_sagas(const mnemo::sagas::saga_index& index,
                           mnemo::runtime::node& n, const std::string& type,
                           const std::string& phase, const std::string& after,
                           size_t limit, const std::string& what);

/// Publishes `mnemo_sagas{type,phase}` gauges of saga type `type`, read
/// from `index` when scraped.
void add_saga_gauges(mnemo::runtime::node& n,
                     const mnemo::sagas::saga_index& index,
                     const std::string& type);

/// Spawns `specs` under one supervisor on `n` (a failed projection
/// restarts with backoff from its stored offset; management messages are
/// routed to the current instance by name), tracks it, and appends the
/// projection names to `names`. Returns the supervisor or sets `error`.
caf::actor supervise_projections(
    mnemo::runtime::node& n, std::vector<mnemo::actors::projection_spec> specs,
    std::vector<std::string>& names, std::string& error);

/// The histogram of HTTP request durations (`mnemo_http_request_seconds`).
mnemo::runtime::metric_histogram& http_latency(mnemo::runtime::node& n);

/// Counts a request refused before reaching an actor
/// (`mnemo_http_client_errors_total{code}`).
void count_client_error(mnemo::runtime::node& n, const std::string& code);

/// Answers `GET /health` and `GET /metrics`.
httpd::response health(mnemo::runtime::node& n);
httpd::response metrics(mnemo::runtime::node& n);

}  // namespace examples
