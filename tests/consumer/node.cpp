// A tiny service on the installed mnemo::http: POST /notes appends an event
// to the journal and answers once it is durable; GET /notes answers the
// stream's version. Run by .ci/run against the install: health, a write, a
// read, the admin guard, and a clean SIGTERM.
#include <memory>
#include <string>

#include "mnemo/http/http_node.hpp"
#include "mnemo/http/service_support.hpp"
#include "mnemo/persistence/journal.hpp"
#include "mnemo/runtime/node.hpp"

namespace mp = mnemo::persistence;

int main(int argc, char** argv) {
  mnemo::http::http_node_config cfg;
  return mnemo::http::run_http_node(
      "mnemo-consumer-node", cfg, argc, argv,
      [](mnemo::runtime::node& node, std::string&) {
        auto* n = &node;
        auto handle = [n](mnemo::http::request&& req,
                          mnemo::http::responder reply) {
          if (req.path() != "/notes")
            return reply(mnemo::http::error_response(404, "not_found",
                                                     "only /notes here"));
          if (req.method == "GET") {
            auto events = n->journal().read_stream("notes", 1, UINT64_MAX,
                                                   UINT64_MAX);
            return reply(mnemo::http::json_response(
                200, {{"notes", events ? events->size() : 0}}));
          }
          mp::new_event ev;
          ev.type = "consumer.note";
          ev.payload = {0x80};  // an empty msgpack map
          auto r = std::make_shared<mnemo::http::responder>(std::move(reply));
          n->journal().append(
              "notes", {ev}, mp::expected_version::any(),
              [r](mp::expected<mp::append_result> res) {
                if (!res)
                  return (*r)(mnemo::http::error_response(
                      503, "storage", res.error().to_string()));
                (*r)(mnemo::http::json_response(
                    201, {{"version", res->stream_version}}));
              });
        };
        return mnemo::http::node_service{nullptr, handle};
      });
}
