#include "mnemo/sagas/service_builder.hpp"

#include <nlohmann/json.hpp>

namespace mnemo::sagas::detail {

void report_resume_failure(const std::string& type, uint32_t shard,
                           const std::string& error) {
  runtime::print_line(nlohmann::json{{"event", "resume_failed"},
                                     {"saga", type},
                                     {"shard", shard},
                                     {"error", error}}
                          .dump());
}

}  // namespace mnemo::sagas::detail
