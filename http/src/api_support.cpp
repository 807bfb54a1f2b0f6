#include "mnemo/http/api_support.hpp"

#include <limits>

namespace mnemo::http::api_support {

namespace {

using json = nlohmann::json;

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string quoted(const char* name) {
  return std::string{"field '"} + name + "'";
}

}  // namespace

std::optional<std::string> percent_decoded(const std::string& text) {
  std::string result;
  result.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      result += text[i];
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    auto hi = hex_digit(text[i + 1]);
    auto lo = hex_digit(text[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    result += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return result;
}

client_error bad_request(std::string code, std::string message) {
  return {400, std::move(code), std::move(message)};
}

client_error not_found(const std::string& target) {
  return {404, "not_found", "no endpoint " + target.substr(0, 200)};
}

client_error method_not_allowed(const std::string& method) {
  return {405, "method_not_allowed",
          "method " + method.substr(0, 20) + " is not allowed here"};
}

client_error invalid_path_id(const std::string& what, size_t max_id) {
  return bad_request("invalid_id", "the " + what + " id must be 1 to " +
                                       std::to_string(max_id) +
                                       " characters of [A-Za-z0-9._-]");
}

bool valid_id(const std::string& id, size_t max_id) {
  if (id.empty() || id.size() > max_id) return false;
  for (auto c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::vector<std::string> segments_of(const std::string& target) {
  auto path = target.substr(0, target.find('?'));
  if (path.size() > 1 && path.back() == '/') path.pop_back();
  std::vector<std::string> result;
  size_t start = 1;  // skip the leading '/'
  while (start <= path.size()) {
    auto end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    result.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  return result;
}

std::variant<query, client_error> query_of(const std::string& target) {
  query result;
  auto q = target.find('?');
  if (q == std::string::npos) return result;
  auto rest = target.substr(q + 1);
  size_t start = 0;
  while (start <= rest.size()) {
    auto end = rest.find('&', start);
    if (end == std::string::npos) end = rest.size();
    auto part = rest.substr(start, end - start);
    start = end + 1;
    if (part.empty()) continue;
    auto eq = part.find('=');
    auto key = percent_decoded(part.substr(0, eq));
    auto value =
        percent_decoded(eq == std::string::npos ? "" : part.substr(eq + 1));
    if (!key || !value)
      return bad_request("invalid_query",
                         "malformed percent-escape in the query: '%' must be "
                         "followed by two hex digits");
    result.emplace_back(std::move(*key), std::move(*value));
  }
  return result;
}

std::optional<uint64_t> number_of(const std::string& text, uint64_t max) {
  if (text.empty() || text.size() > 19 ||
      text.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  auto value = std::stoull(text);
  if (value > max) return std::nullopt;
  return value;
}

bool is_blank(const std::string& body) {
  return body.find_first_not_of(" \t\r\n") == std::string::npos;
}

std::variant<json, client_error> object_of(const std::string& body) {
  auto doc = json::parse(body, nullptr, false);
  if (doc.is_discarded())
    return bad_request("malformed_json", "the body is not valid JSON");
  if (!doc.is_object())
    return bad_request("malformed_json", "the body must be a JSON object");
  return doc;
}

// -- body_reader --------------------------------------------------------------

body_reader::body_reader(const json& obj, size_t max_id)
    : obj_(obj), max_id_(max_id) {}

const json* body_reader::field(const char* name, bool required) {
  auto i = obj_.find(name);
  if (i == obj_.end() || i->is_null()) {
    if (required)
      fail(bad_request("missing_field", quoted(name) + " is required"));
    return nullptr;
  }
  return &*i;
}

std::string body_reader::string(const char* name, bool required) {
  if (failed()) return {};
  auto* f = field(name, required);
  if (f == nullptr) return {};
  if (!f->is_string()) {
    fail(bad_request("wrong_type", quoted(name) + " must be a string"));
    return {};
  }
  return f->get<std::string>();
}

std::string body_reader::id(const char* name, bool required) {
  auto value = string(name, required);
  if (failed() || (!required && value.empty())) return value;
  if (!valid_id(value, max_id_)) {
    fail(bad_request("invalid_id", quoted(name) + " must be 1 to " +
                                       std::to_string(max_id_) +
                                       " characters of [A-Za-z0-9._-]"));
    return {};
  }
  return value;
}

int64_t body_reader::positive_integer(const char* name, int64_t max,
                                      const char* error_code) {
  if (failed()) return 0;
  auto* f = field(name, true);
  if (f == nullptr) return 0;
  auto range =
      quoted(name) + " must be an integer from 1 to " + std::to_string(max);
  if (!f->is_number()) {
    fail(bad_request("wrong_type", range));
    return 0;
  }
  if (!f->is_number_integer() ||
      (f->is_number_unsigned() &&
       f->get<uint64_t>() >
           static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))) {
    fail(bad_request(error_code, range));
    return 0;
  }
  auto value = f->get<int64_t>();
  if (value <= 0 || value > max) {
    fail(bad_request(error_code, range));
    return 0;
  }
  return value;
}

void body_reader::fail(client_error err) {
  if (!error_) error_ = std::move(err);
}

// -- listings -----------------------------------------------------------------

std::variant<listing_query, client_error> listing_query_of(
    const std::string& target, const std::vector<std::string>& statuses,
    bool status_required, const std::string& what, size_t max_id) {
  auto params = query_of(target);
  if (auto* err = std::get_if<client_error>(&params)) return std::move(*err);
  listing_query result;
  bool has_status = false;
  for (auto& [key, value] : std::get<query>(params)) {
    if (key == "status") {
      result.status = value;
      has_status = true;
    } else if (key == "after") {
      if (!valid_id(value, max_id)) return invalid_path_id(what, max_id);
      result.after = value;
    } else if (key == "limit") {
      auto n = number_of(value, 1000);
      if (!n || *n == 0)
        return bad_request("invalid_query", "limit must be 1 to 1000");
      result.limit = static_cast<size_t>(*n);
    } else {
      return bad_request("invalid_query",
                         "unknown query parameter '" + key.substr(0, 40) + "'");
    }
  }
  if (!has_status && !status_required) return result;
  for (auto& s : statuses)
    if (result.status == s) return result;
  std::string names;
  for (size_t i = 0; i < statuses.size(); ++i) {
    if (i > 0) names += i + 1 == statuses.size() ? " or " : ", ";
    names += statuses[i];
  }
  return bad_request("invalid_query", "status must be " + names);
}

}  // namespace mnemo::http::api_support
