#include "mnemo/runtime/cluster_view.hpp"

#include <algorithm>
#include <set>

namespace mnemo::runtime {
namespace {

constexpr uint64_t fnv_offset = 14695981039346656037ull;
constexpr uint64_t fnv_prime = 1099511628211ull;

uint64_t fnv1a(uint64_t h, std::string_view bytes) noexcept {
  for (auto c : bytes) {
    h ^= static_cast<uint8_t>(c);
    h *= fnv_prime;
  }
  return h;
}

// splitmix64's finaliser: FNV's low bits alone are poorly mixed.
uint64_t mix(uint64_t h) noexcept {
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

// The rendezvous hash of (member, shard): the highest owns the shard.
uint64_t rendezvous(std::string_view member, uint32_t shard) noexcept {
  auto h = fnv1a(fnv_offset, member);
  return mix(fnv1a(h, std::string_view{"\0", 1}) ^ (uint64_t{shard} * fnv_prime));
}

bool valid_member_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
}

}  // namespace

std::string cluster_member::to_string() const {
  return id + "@" + host + ":" + std::to_string(port);
}

std::optional<cluster_member> parse_member(std::string_view text,
                                           std::string& why) {
  auto at = text.find('@');
  auto colon = text.rfind(':');
  if (at == std::string_view::npos || colon == std::string_view::npos ||
      colon < at) {
    why = "member '" + std::string{text} + "' is not of the form id@host:port";
    return std::nullopt;
  }
  cluster_member m;
  m.id = std::string{text.substr(0, at)};
  m.host = std::string{text.substr(at + 1, colon - at - 1)};
  auto port = text.substr(colon + 1);
  if (!valid_member_id(m.id)) {
    why = "member id '" + m.id + "' must be 1-64 characters of [A-Za-z0-9._-]";
    return std::nullopt;
  }
  if (m.host.empty()) {
    why = "member '" + std::string{text} + "' has no host";
    return std::nullopt;
  }
  uint32_t value = 0;
  bool digits = !port.empty() && port.size() <= 5;
  for (auto c : port) {
    if (c < '0' || c > '9') digits = false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (!digits || value == 0 || value > 65535) {
    why = "member '" + std::string{text} + "' has no valid port (1-65535)";
    return std::nullopt;
  }
  m.port = static_cast<uint16_t>(value);
  return m;
}

std::optional<cluster_view> cluster_view::make(
    std::vector<cluster_member> members, uint32_t shards, std::string& why) {
  if (members.empty()) {
    why = "the cluster has no members";
    return std::nullopt;
  }
  if (shards == 0 || shards > 65536) {
    why = "the shard count must be 1-65536, got " + std::to_string(shards);
    return std::nullopt;
  }
  std::sort(members.begin(), members.end(),
            [](auto& x, auto& y) { return x.id < y.id; });
  std::set<std::string> addresses;
  for (size_t i = 0; i < members.size(); ++i) {
    if (!valid_member_id(members[i].id)) {
      why = "member id '" + members[i].id + "' is not valid";
      return std::nullopt;
    }
    if (i > 0 && members[i].id == members[i - 1].id) {
      why = "member id '" + members[i].id + "' appears twice";
      return std::nullopt;
    }
    auto addr = members[i].host + ":" + std::to_string(members[i].port);
    if (!addresses.insert(addr).second) {
      why = "address " + addr + " appears twice";
      return std::nullopt;
    }
  }
  cluster_view v;
  v.members_ = std::move(members);
  v.shards_ = shards;
  v.owner_index_.resize(shards);
  for (uint32_t s = 0; s < shards; ++s) {
    uint64_t best = 0;
    uint32_t best_index = 0;
    for (uint32_t i = 0; i < v.members_.size(); ++i) {
      auto h = rendezvous(v.members_[i].id, s);
      if (i == 0 || h > best) {
        best = h;
        best_index = i;
      }
    }
    v.owner_index_[s] = best_index;
  }
  return v;
}

const cluster_member* cluster_view::find(std::string_view id) const noexcept {
  for (auto& m : members_)
    if (m.id == id) return &m;
  return nullptr;
}

std::string cluster_view::fingerprint() const {
  // Ids only: ownership and replica sets depend on nothing else, and a
  // member may move to another address (a replacement machine) without
  // the others changing their view.
  std::string result = "shards=" + std::to_string(shards_) + ";members=";
  for (size_t i = 0; i < members_.size(); ++i)
    result += (i ? "," : "") + members_[i].id;
  return result;
}

uint32_t entity_shard(std::string_view type, std::string_view id,
                      uint32_t shards) noexcept {
  auto h = fnv1a(fnv_offset, type);
  h = fnv1a(h, std::string_view{"\0", 1});
  h = fnv1a(h, id);
  return static_cast<uint32_t>(mix(h) % (shards == 0 ? 1 : shards));
}

const std::string& cluster_view::owner_of(uint32_t shard) const noexcept {
  return members_[owner_index_[shard % shards_]].id;
}

std::vector<std::string> cluster_view::replicas_of(uint32_t shard,
                                                  size_t count) const {
  std::vector<std::pair<uint64_t, const std::string*>> ranked;
  for (auto& m : members_)
    ranked.emplace_back(rendezvous(m.id, shard % shards_), &m.id);
  // Highest hash first; ties (never seen, 64 bits) by id.
  std::sort(ranked.begin(), ranked.end(), [](auto& x, auto& y) {
    return x.first != y.first ? x.first > y.first : *x.second < *y.second;
  });
  std::vector<std::string> result;
  for (size_t i = 0; i < ranked.size() && i < count; ++i)
    result.push_back(*ranked[i].second);
  return result;
}

std::vector<uint32_t> cluster_view::shards_of(std::string_view member) const {
  std::vector<uint32_t> result;
  for (uint32_t s = 0; s < shards_; ++s)
    if (members_[owner_index_[s]].id == member) result.push_back(s);
  return result;
}

}  // namespace mnemo::runtime
