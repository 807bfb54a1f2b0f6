#include "mnemo/persistence/error.hpp"

#include <ostream>

namespace mnemo::persistence {

const char* to_string(errc x) noexcept {
  switch (x) {
    case errc::none:
      return "none";
    case errc::invalid_argument:
      return "invalid_argument";
    case errc::version_conflict:
      return "version_conflict";
    case errc::duplicate_event_id:
      return "duplicate_event_id";
    case errc::corrupt_record:
      return "corrupt_record";
    case errc::unknown_event_type:
      return "unknown_event_type";
    case errc::unknown_schema_version:
      return "unknown_schema_version";
    case errc::decode_failed:
      return "decode_failed";
    case errc::encode_failed:
      return "encode_failed";
    case errc::storage_full:
      return "storage_full";
    case errc::storage_error:
      return "storage_error";
    case errc::format_mismatch:
      return "format_mismatch";
    case errc::journal_failed:
      return "journal_failed";
    case errc::journal_closed:
      return "journal_closed";
    case errc::not_found:
      return "not_found";
    case errc::directory_in_use:
      return "directory_in_use";
    case errc::stream_moved:
      return "stream_moved";
    case errc::stale_epoch:
      return "stale_epoch";
    case errc::log_mismatch:
      return "log_mismatch";
    case errc::not_leader:
      return "not_leader";
  }
  return "unknown";
}

std::ostream& operator<<(std::ostream& out, errc x) {
  return out << to_string(x);
}

error error::conflict(version_conflict_info info) {
  auto msg = "version conflict on stream '" + info.stream + "': expected " +
             (info.expected == 0 ? std::string{"no stream (version 0)"}
                                 : "version " + std::to_string(info.expected)) +
             ", actual version " + std::to_string(info.actual) +
             "; reload the stream and retry";
  error result{errc::version_conflict, std::move(msg)};
  result.conflict_ = std::move(info);
  return result;
}

std::string error::to_string() const {
  if (!*this) return "none";
  return std::string{persistence::to_string(code_)} + ": " + message_;
}

}  // namespace mnemo::persistence
