#pragma once

// The request-parsing pieces the example nodes' HTTP APIs share: path
// segments, query strings, JSON object bodies with typed fields, ids,
// listing queries and the client errors they answer. Pure functions, no
// I/O; none of them throws on any input.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace mnemo::http::api_support {

/// A request the API refuses: HTTP status (4xx), error code, message.
struct client_error {
  unsigned status = 400;
  std::string code;
  std::string message;
};

/// Returns a 400 error with `code` and `message`.
client_error bad_request(std::string code, std::string message);

/// Returns 404 `not_found` for `target` (quoted up to 200 bytes).
client_error not_found(const std::string& target);

/// Returns 405 `method_not_allowed` for `method` (quoted up to 20 bytes).
client_error method_not_allowed(const std::string& method);

/// Returns 400 `invalid_id` saying that the `what` id (e.g. "account") in
/// the path or query must be 1 to `max_id` characters of [A-Za-z0-9._-].
client_error invalid_path_id(const std::string& what, size_t max_id);

/// Returns whether `id` is 1 to `max_id` characters of [A-Za-z0-9._-].
bool valid_id(const std::string& id, size_t max_id);

/// Returns the path segments of `target` without its query and one
/// trailing '/': "/a/b/?x" -> {"a", "b"}, "/" -> {""}. Segments are not
/// percent-decoded (ids never need it, so an escape makes them invalid).
/// Precondition: `target` starts with '/'.
std::vector<std::string> segments_of(const std::string& target);

/// Decodes the %XX escapes of `text` ('+' stays '+'); nothing if one is
/// malformed.
std::optional<std::string> percent_decoded(const std::string& text);

/// The parameters of a query string, in order, duplicates kept.
using query = std::vector<std::pair<std::string, std::string>>;

/// Parses the query of `target` ("...?a=1&b=x%20y"): keys and values are
/// percent-decoded ('+' stays '+'); a parameter without '=' has an empty
/// value; empty parameters ("a=1&&b=2") are skipped. Errors: 400
/// `invalid_query` if a '%' is not followed by two hex digits.
std::variant<query, client_error> query_of(const std::string& target);

/// Returns the decimal number `text` if it has only digits (at most 19) and
/// is at most `max`, else nothing.
std::optional<uint64_t> number_of(const std::string& text, uint64_t max);

/// Returns whether `body` is empty or only whitespace (an omitted body).
bool is_blank(const std::string& body);

/// Parses `body` as a JSON object. Errors: 400 `malformed_json` (not JSON,
/// or JSON but not an object).
std::variant<nlohmann::json, client_error> object_of(const std::string& body);

/// Reads typed fields of a JSON object body and keeps the first error. A
/// field that is absent or null is missing. After an error, reads return
/// empty values and record nothing more.
class body_reader {
 public:
  /// Reads `obj`, which must outlive the reader; ids may be up to `max_id`.
  body_reader(const nlohmann::json& obj, size_t max_id);

  /// Returns string field `name`. Errors: `missing_field` (required and
  /// missing), `wrong_type` (not a string). An optional missing field is "".
  std::string string(const char* name, bool required = true);

  /// Returns id field `name`, as `string` does. Errors: also `invalid_id`
  /// (not `valid_id`); an optional field that is missing or "" is "".
  std::string id(const char* name, bool required = true);

  /// Returns required integer field `name`, from 1 to `max`. Errors:
  /// `missing_field`, `wrong_type` (not a number), `error_code` (a number
  /// that is not an integer, or out of range, or beyond 64 bits).
  int64_t positive_integer(const char* name, int64_t max,
                           const char* error_code);

  /// Records `err` unless an error is already recorded.
  void fail(client_error err);

  /// Returns whether an error is recorded.
  bool failed() const noexcept { return error_.has_value(); }

  /// Returns the recorded error, if any.
  const std::optional<client_error>& error() const noexcept { return error_; }

 private:
  const nlohmann::json* field(const char* name, bool required);

  const nlohmann::json& obj_;
  size_t max_id_;
  std::optional<client_error> error_;
};

/// Parses `body` as a JSON object and returns what `make(body_reader&)`
/// builds from it, or the first error: `malformed_json` or the first error
/// recorded on the reader.
template <class Operation, class Make>
std::variant<Operation, client_error> with_object(const std::string& body,
                                                  size_t max_id, Make make) {
  auto obj = object_of(body);
  if (auto* err = std::get_if<client_error>(&obj)) return std::move(*err);
  body_reader r{std::get<nlohmann::json>(obj), max_id};
  Operation op = make(r);
  if (r.failed()) return *r.error();
  return op;
}

/// The query of a listing: `?status=S&after=ID&limit=N`.
struct listing_query {
  /// One of the accepted statuses; "" if absent (and allowed to be).
  std::string status;
  /// List entries with ids after this one; "" lists from the start.
  std::string after;
  /// Most entries to list, 1 to 1000. Default: 100.
  size_t limit = 100;
};

/// Parses the listing query of `target`. `statuses` are the accepted
/// status values; `status_required` says whether the status may be absent;
/// `what` names the listed ids in errors (e.g. "transfer"). Errors: 400
/// `invalid_query` (a malformed escape, an unknown parameter, a status
/// missing when required, empty or not in `statuses`, a limit that is not
/// 1 to 1000), `invalid_id` (`after` not a valid id).
std::variant<listing_query, client_error> listing_query_of(
    const std::string& target, const std::vector<std::string>& statuses,
    bool status_required, const std::string& what, size_t max_id);

/// Converts a variant into a variant `Wide` holding all of its types.
template <class Wide, class... Ts>
Wide widen(std::variant<Ts...> x) {
  return std::visit([](auto&& v) -> Wide { return std::move(v); },
                    std::move(x));
}

}  // namespace mnemo::http::api_support
