#include "shard_keys.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "mnemo/runtime/journal_feed.hpp"

namespace mnemo::runtime::coordination::shard_keys {

// The shard of a candidate's key, given what follows "<prefix>/shards/":
// "<shard>/candidates/<lease in hex>". Nothing for a key of another kind
// (a shard's configuration lives next to its candidates).
std::optional<uint32_t> candidate_shard(std::string_view rest) {
  constexpr std::string_view mid = "/candidates/";
  auto slash = rest.find('/');
  if (slash == std::string_view::npos || rest.substr(slash, mid.size()) != mid)
    return std::nullopt;
  auto lease = rest.substr(slash + mid.size());
  if (lease.empty() ||
      lease.find_first_not_of("0123456789abcdef") != std::string_view::npos)
    return std::nullopt;
  return parse_shard_number(rest.substr(0, slash));
}

namespace {

// The shard of "<shard><tail>" (tail e.g. "/voters").
std::optional<uint32_t> shard_before(std::string_view rest,
                                     std::string_view tail) {
  if (rest.size() <= tail.size() ||
      rest.substr(rest.size() - tail.size()) != tail)
    return std::nullopt;
  return parse_shard_number(rest.substr(0, rest.size() - tail.size()));
}

}  // namespace

std::optional<uint32_t> voters_shard(std::string_view rest) {
  return shard_before(rest, "/voters");
}

std::optional<uint32_t> established_shard(std::string_view rest) {
  return shard_before(rest, "/established");
}

std::optional<uint32_t> observers_shard(std::string_view rest) {
  return shard_before(rest, "/observers");
}

// The shard and member of a ready key, given what follows
// "<prefix>/shards/": "<shard>/ready/<member>".
std::optional<std::pair<uint32_t, std::string>> ready_key(
    std::string_view rest) {
  constexpr std::string_view mid = "/ready/";
  auto slash = rest.find('/');
  if (slash == std::string_view::npos || rest.substr(slash, mid.size()) != mid)
    return std::nullopt;
  auto member = rest.substr(slash + mid.size());
  auto shard = parse_shard_number(rest.substr(0, slash));
  if (!shard || member.empty() || member.find('/') != std::string_view::npos)
    return std::nullopt;
  return std::make_pair(*shard, std::string{member});
}

namespace {

// Member ids in a JSON array: none empty, none twice; or nothing and why
// not.
std::optional<std::vector<std::string>> parse_members(
    const nlohmann::json& list, std::string& why) {
  if (!list.is_array()) {
    why = "not a list";
    return std::nullopt;
  }
  std::vector<std::string> out;
  for (auto& v : list) {
    if (!v.is_string() || v.get_ref<const std::string&>().empty()) {
      why = "not a member id: " + v.dump();
      return std::nullopt;
    }
    auto& id = v.get_ref<const std::string&>();
    if (std::find(out.begin(), out.end(), id) != out.end()) {
      why = "member '" + id + "' twice";
      return std::nullopt;
    }
    out.push_back(id);
  }
  return out;
}

}  // namespace

// An observers key's value: a JSON list of member ids.
std::optional<std::vector<std::string>> parse_observers(const std::string& text,
                                                        std::string& why) {
  auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded()) {
    why = "not JSON";
    return std::nullopt;
  }
  return parse_members(doc, why);
}

bool contains(const std::vector<std::string>& list, const std::string& member) {
  return std::find(list.begin(), list.end(), member) != list.end();
}

std::string voters_json(const std::vector<std::string>& voters,
                        const std::vector<std::string>& previous) {
  return nlohmann::json{{"voters", voters}, {"previous", previous}}.dump();
}

std::string observers_json(const std::vector<std::string>& members) {
  return nlohmann::json(members).dump();
}

std::optional<voters_value> parse_voters(const std::string& text,
                                        std::string& why) {
  auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    why = "not a JSON object";
    return std::nullopt;
  }
  auto list = doc.find("voters");
  if (list == doc.end() || !list->is_array() || list->empty()) {
    why = "no \"voters\" list";
    return std::nullopt;
  }
  voters_value out;
  auto voters = parse_members(*list, why);
  if (!voters) return std::nullopt;
  out.voters = std::move(*voters);
  // `previous` is the operator's way back (abort); a value without one
  // (written by hand) has none.
  if (auto prev = doc.find("previous"); prev != doc.end()) {
    auto members = parse_members(*prev, why);
    if (!members) {
      why = "previous: " + why;
      return std::nullopt;
    }
    out.previous = std::move(*members);
  }
  return out;
}

std::optional<std::string> member_key(std::string_view rest,
                                      std::string_view suffix) {
  if (rest.size() <= suffix.size() ||
      rest.substr(rest.size() - suffix.size()) != suffix)
    return std::nullopt;
  auto member = rest.substr(0, rest.size() - suffix.size());
  if (member.find('/') != std::string_view::npos) return std::nullopt;
  return std::string{member};
}

}  // namespace mnemo::runtime::coordination::shard_keys
