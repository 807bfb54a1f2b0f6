#pragma once

// The keys of one shard under `<prefix>/shards/` in etcd, and their values
// (docs/coordination.md, docs/replica-set-changes.md):
//   <n>/candidates/<lease hex>  a member's candidacy (value: member id)
//   <n>/voters                  {"voters":[...],"previous":[...]}
//   <n>/observers               [...] (member ids)
//   <n>/established             decimal mod revision of `voters` that a
//                               leader of those voters committed under
//   <n>/ready/<member>          an observer a leader saw at its commit
//                               point (value: that leader's id)
// Functions taking `rest` take what follows "<prefix>/shards/" and answer
// nothing for a key of another kind. Shards are decimal without leading
// zeros.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mnemo::runtime::coordination::shard_keys {

std::optional<uint32_t> candidate_shard(std::string_view rest);
std::optional<uint32_t> voters_shard(std::string_view rest);
std::optional<uint32_t> observers_shard(std::string_view rest);
std::optional<uint32_t> established_shard(std::string_view rest);
/// Whether `list` names `member`.
bool contains(const std::vector<std::string>& list, const std::string& member);

/// (shard, member) of a ready key.
std::optional<std::pair<uint32_t, std::string>> ready_key(
    std::string_view rest);

/// A voters key's value: the voters, preferred first, and the set before
/// the last change (empty for the first).
struct voters_value {
  std::vector<std::string> voters;
  std::vector<std::string> previous;
};
std::string voters_json(const std::vector<std::string>& voters,
                        const std::vector<std::string>& previous = {});
/// Nothing, and why not, unless there is at least one voter, each a member
/// id (not empty), none twice (nor twice in `previous`).
std::optional<voters_value> parse_voters(const std::string& text,
                                         std::string& why);
std::string observers_json(const std::vector<std::string>& members);
/// Nothing, and why not, unless a JSON list of member ids, none twice.
std::optional<std::vector<std::string>> parse_observers(const std::string& text,
                                                        std::string& why);

/// The member of a directory key: `rest` (what follows
/// "<prefix>/members/") is "<member><suffix>", e.g. suffix "/address";
/// nothing for a key of another kind.
std::optional<std::string> member_key(std::string_view rest,
                                      std::string_view suffix);

/// The replication protocol of this build, which each member records under
/// `<prefix>/members/<member>/protocol`: 2 reads each shard's voters keys
/// (builds before 2026-12-07 counted over the shard map, knew no such key,
/// and recorded no protocol). Voter changes wait until every member of the
/// directory records at least this.
constexpr int replica_protocol = 2;

}  // namespace mnemo::runtime::coordination::shard_keys
