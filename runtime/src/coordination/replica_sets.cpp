#include "mnemo/runtime/coordination/replica_sets.hpp"

#include <algorithm>
#include <cstdlib>
#include <set>

#include "mnemo/runtime/error.hpp"
#include "shard_keys.hpp"

namespace mnemo::runtime::coordination {

namespace {

using namespace shard_keys;

std::vector<std::string> without(std::vector<std::string> list,
                                 const std::string& x) {
  list.erase(std::remove(list.begin(), list.end(), x), list.end());
  return list;
}

std::string join(const std::vector<std::string>& list) {
  std::string out = "[";
  for (size_t i = 0; i < list.size(); ++i) out += (i ? "," : "") + list[i];
  return out + "]";
}

std::string shard_base(const std::string& prefix, uint32_t shard) {
  return prefix + "/shards/" + std::to_string(shard) + "/";
}

std::string describe_set(const replica_set& s) {
  return "shard " + std::to_string(s.shard) + ": voters " + join(s.voters) +
         (s.established ? "" : " (not established)") + ", observers " +
         join(s.observers) + ", ready " + join(s.ready) + ", leader " +
         (s.leader.empty() ? "none" : s.leader);
}

caf::error refused(const replica_set& s, const std::string& why) {
  return make_error(errc::invalid_argument, why + " (" + describe_set(s) + ")");
}

// Runs a change of the shard's keys guarded by `compare`; on a lost race,
// `conflict` with the set as it is now.
caf::expected<replica_set> commit(etcd_client& etcd, const std::string& prefix,
                                  uint32_t shard,
                                  std::vector<etcd_compare> compare,
                                  std::vector<etcd_op> ops) {
  auto done = etcd.txn(compare, ops);
  if (!done) return std::move(done.error());
  auto now = read_replica_set(etcd, prefix, shard);
  if (!now)
    return make_error(
        errc::owner_unavailable,
        std::string{done->succeeded ? "the change was made"
                                    : "the change was not made"} +
            ", but reading the set back failed: " + describe(now.error()));
  if (!done->succeeded)
    return make_error(errc::conflict,
                      "the replica set changed meanwhile; now " +
                          describe_set(*now));
  return now;
}

// A change of voters to `next` (one member added or removed): guarded by
// the voters' revision and, unless `abort`, by their being established;
// deletes the candidacies (and the ready keys) with it.
caf::expected<replica_set> change_voters(etcd_client& etcd,
                                         const std::string& prefix,
                                         const replica_set& s,
                                         std::vector<std::string> next,
                                         std::vector<etcd_compare> also,
                                         std::vector<etcd_op> more,
                                         bool abort = false) {
  auto base = shard_base(prefix, s.shard);
  std::vector<etcd_compare> compare{
      etcd_compare::changed_at(base + "voters", s.revision)};
  if (!abort)
    compare.push_back(etcd_compare::holds(base + "established",
                                          std::to_string(s.revision)));
  for (auto& c : also) compare.push_back(std::move(c));
  std::vector<etcd_op> ops{
      etcd_op::put(base + "voters", voters_json(next, s.voters)),
      etcd_op::erase_prefix(base + "candidates/"),
      etcd_op::erase_prefix(base + "ready/")};
  for (auto& op : more) ops.push_back(std::move(op));
  return commit(etcd, prefix, s.shard, std::move(compare), std::move(ops));
}

// The steps over a set as read: each checks what it needs against `s`
// and makes its change guarded by `s`'s revisions, so that a step chosen
// from one read (replace_member) is a conflict if the set changed since.
caf::expected<replica_set> observe_from(etcd_client& etcd,
                                        const std::string& prefix,
                                        const replica_set& s,
                                        const std::string& member) {
  if (member.empty() || member.find('/') != std::string::npos)
    return refused(s, "'" + member + "' is no member id");
  if (contains(s.voters, member))
    return refused(s,
                   member + " is a voter of shard " + std::to_string(s.shard));
  if (contains(s.observers, member)) return replica_set{s};
  auto base = shard_base(prefix, s.shard);
  auto next = s.observers;
  next.push_back(member);
  return commit(
      etcd, prefix, s.shard,
      {etcd_compare::changed_at(base + "voters", s.revision),
       etcd_compare::changed_at(base + "observers", s.observers_revision)},
      {etcd_op::put(base + "observers", observers_json(next))});
}

caf::expected<replica_set> unobserve_from(etcd_client& etcd,
                                          const std::string& prefix,
                                          const replica_set& s,
                                          const std::string& member) {
  if (!contains(s.observers, member)) return s;
  auto base = shard_base(prefix, s.shard);
  return commit(
      etcd, prefix, s.shard,
      {etcd_compare::changed_at(base + "observers", s.observers_revision)},
      {etcd_op::put(base + "observers",
                    observers_json(without(s.observers, member))),
       etcd_op::erase(base + "ready/" + member)});
}

caf::expected<replica_set> promote_from(etcd_client& etcd,
                                        const std::string& prefix,
                                        const replica_set& s,
                                        const std::string& member) {
  if (!contains(s.observers, member))
    return refused(s, member + " does not observe shard " +
                          std::to_string(s.shard) + " (observe it first)");
  if (!contains(s.ready, member))
    return refused(
        s, "no leader reported " + member + " holding its commit point yet");
  if (!s.established)
    return refused(s,
                   "no leader of the current voters committed its epoch "
                   "yet; wait for one before the next change");
  if (auto err = check_protocols(etcd, prefix)) return err;
  auto base = shard_base(prefix, s.shard);
  auto voters = s.voters;
  voters.push_back(member);
  etcd_compare ready{base + "ready/" + member,
                     etcd_compare::field::create_revision,
                     etcd_compare::relation::greater,
                     0,
                     {}};
  return change_voters(
      etcd, prefix, s, std::move(voters),
      {etcd_compare::changed_at(base + "observers", s.observers_revision),
       std::move(ready)},
      {etcd_op::put(base + "observers",
                    observers_json(without(s.observers, member)))});
}

caf::expected<replica_set> remove_voter_from(etcd_client& etcd,
                                             const std::string& prefix,
                                             const replica_set& s,
                                             const std::string& member) {
  if (!contains(s.voters, member))
    return refused(s,
                   member + " is no voter of shard " + std::to_string(s.shard));
  if (s.voters.size() == 1)
    return refused(
        s, member + " is the last voter of shard " + std::to_string(s.shard));
  if (!s.established)
    return refused(s,
                   "no leader of the current voters committed its epoch "
                   "yet; wait for one before the next change");
  if (auto err = check_protocols(etcd, prefix)) return err;
  return change_voters(etcd, prefix, s, without(s.voters, member), {}, {});
}

}  // namespace

caf::error check_protocols(etcd_client& etcd, const std::string& prefix) {
  auto base = prefix + "/members/";
  auto keys = etcd.get_prefix(base);
  if (!keys) return std::move(keys.error());
  // Every member that left a key, and those that record a protocol this
  // build's voter changes are safe with.
  std::set<std::string> members;
  std::set<std::string> current;
  for (auto& kv : *keys) {
    std::string_view rest{kv.key};
    rest.remove_prefix(base.size());
    auto slash = rest.find('/');
    if (slash == std::string_view::npos || slash == 0) continue;
    std::string member{rest.substr(0, slash)};
    members.insert(member);
    // Taken out of the directory (forget_member): counts in no set.
    if (rest.substr(slash + 1) == "departed") current.insert(member);
    if (rest.substr(slash + 1) != "protocol") continue;
    char* end = nullptr;
    auto version = std::strtol(kv.value.c_str(), &end, 10);
    if (!kv.value.empty() && *end == '\0' && version >= replica_protocol)
      current.insert(member);
  }
  std::vector<std::string> old;
  for (auto& m : members)
    if (current.count(m) == 0) old.push_back(m);
  if (old.empty()) return {};
  return make_error(
      errc::invalid_argument,
      "member(s) " + join(old) + " run a build that does not read the "
      "shards' voters keys (no " + base + "<id>/protocol of at least " +
      std::to_string(replica_protocol) + "): a change of voters would leave "
      "them counting majorities over other replicas; upgrade them first, or "
      "delete their keys (" + base + "<id>/) if they are gone for good");
}

caf::expected<replica_set> read_replica_set(etcd_client& etcd,
                                            const std::string& prefix,
                                            uint32_t shard) {
  auto base = shard_base(prefix, shard);
  auto keys = etcd.get_prefix(base);
  if (!keys) return std::move(keys.error());
  replica_set s;
  s.shard = shard;
  bool found = false;
  std::string established;
  auto shards = prefix + "/shards/";
  for (auto& kv : *keys) {  // oldest first
    std::string_view rest{kv.key};
    rest.remove_prefix(shards.size());
    if (candidate_shard(rest) == shard) {
      if (s.leader.empty()) {
        s.leader = kv.value;
        s.epoch = kv.create_revision;
      }
    } else if (voters_shard(rest) == shard) {
      std::string why;
      auto v = parse_voters(kv.value, why);
      if (!v)
        return make_error(errc::invalid_argument,
                          kv.key + " holds no voter list (" + why + ")");
      s.voters = std::move(v->voters);
      s.previous = std::move(v->previous);
      s.revision = kv.mod_revision;
      found = true;
    } else if (observers_shard(rest) == shard) {
      std::string why;
      auto o = parse_observers(kv.value, why);
      if (!o)
        return make_error(errc::invalid_argument,
                          kv.key + " holds no list of members (" + why + ")");
      s.observers = std::move(*o);
      s.observers_revision = kv.mod_revision;
    } else if (established_shard(rest) == shard) {
      established = kv.value;
    } else if (auto r = ready_key(rest); r && r->first == shard) {
      s.ready.push_back(r->second);
    }
  }
  if (!found)
    return make_error(errc::not_found,
                      "shard " + std::to_string(shard) +
                          " has no voters in etcd (" + base +
                          "voters): no member created them from the shard "
                          "map yet, or the shard does not exist");
  s.established = established == std::to_string(s.revision);
  std::sort(s.ready.begin(), s.ready.end());
  return s;
}

caf::expected<replica_set> observe(etcd_client& etcd, const std::string& prefix,
                                   uint32_t shard, const std::string& member) {
  auto s = read_replica_set(etcd, prefix, shard);
  if (!s) return s;
  return observe_from(etcd, prefix, *s, member);
}

caf::expected<replica_set> unobserve(etcd_client& etcd,
                                     const std::string& prefix, uint32_t shard,
                                     const std::string& member) {
  auto s = read_replica_set(etcd, prefix, shard);
  if (!s) return s;
  return unobserve_from(etcd, prefix, *s, member);
}

caf::expected<replica_set> promote(etcd_client& etcd, const std::string& prefix,
                                   uint32_t shard, const std::string& member) {
  auto s = read_replica_set(etcd, prefix, shard);
  if (!s) return s;
  return promote_from(etcd, prefix, *s, member);
}

caf::expected<replica_set> remove_voter(etcd_client& etcd,
                                        const std::string& prefix,
                                        uint32_t shard,
                                        const std::string& member) {
  auto s = read_replica_set(etcd, prefix, shard);
  if (!s) return s;
  return remove_voter_from(etcd, prefix, *s, member);
}

caf::expected<replica_set> abort_change(etcd_client& etcd,
                                        const std::string& prefix,
                                        uint32_t shard) {
  auto s = read_replica_set(etcd, prefix, shard);
  if (!s) return s;
  if (s->previous.empty())
    return refused(*s, "no earlier voters are recorded for shard " +
                           std::to_string(shard));
  // One member added or removed (R1), as every change made here is; a
  // value written by hand may say otherwise.
  size_t differ = 0;
  for (auto& m : s->voters) differ += contains(s->previous, m) ? 0 : 1;
  for (auto& m : s->previous) differ += contains(s->voters, m) ? 0 : 1;
  if (differ != 1)
    return refused(*s, "the earlier voters " + join(s->previous) +
                           " differ by more than one member");
  if (auto err = check_protocols(etcd, prefix)) return err;
  auto back = s->previous;
  return change_voters(etcd, prefix, *s, std::move(back), {}, {}, true);
}

caf::expected<std::vector<std::string>> live_members(
    etcd_client& etcd, const std::string& prefix) {
  auto base = prefix + "/members/";
  auto keys = etcd.get_prefix(base);
  if (!keys) return std::move(keys.error());
  std::vector<std::string> out;
  for (auto& kv : *keys)
    if (auto id = member_key(std::string_view{kv.key}.substr(base.size()), "/live");
        id && kv.lease != 0)
      out.push_back(std::move(*id));
  std::sort(out.begin(), out.end());
  return out;
}

caf::expected<std::vector<std::string>> forget_member(
    etcd_client& etcd, const std::string& prefix, const std::string& member) {
  if (member.empty() || member.find('/') != std::string::npos)
    return make_error(errc::invalid_argument,
                      "'" + member + "' is no member id");
  auto base = prefix + "/members/" + member + "/";
  auto live = etcd.get(base + "live");
  if (!live) return std::move(live.error());
  if (*live)
    return make_error(errc::invalid_argument,
                      "member " + member + " runs (" + base +
                          "live): stop it first");
  // Every shard's voters and observers, in one range.
  auto shards = prefix + "/shards/";
  auto keys = etcd.get_prefix(shards);
  if (!keys) return std::move(keys.error());
  std::vector<std::string> holds;
  for (auto& kv : *keys) {
    std::string_view rest{kv.key};
    rest.remove_prefix(shards.size());
    std::string why;
    std::optional<uint32_t> shard;
    bool named = false;
    if ((shard = voters_shard(rest))) {
      auto v = parse_voters(kv.value, why);
      named = !v || contains(v->voters, member);  // unreadable: not sure
    } else if ((shard = observers_shard(rest))) {
      auto o = parse_observers(kv.value, why);
      named = !o || contains(*o, member);
    }
    if (named) holds.push_back(std::to_string(*shard));
  }
  if (!holds.empty())
    return make_error(errc::invalid_argument,
                      "member " + member + " is a replica of shard(s) " +
                          join(holds) + " (or their keys are unreadable): "
                          "decommission it first");
  // What it left under its prefix goes; `departed` stays, which also keeps
  // it out of check_protocols.
  auto existing = etcd.get_prefix(base);
  if (!existing) return std::move(existing.error());
  std::vector<std::string> deleted;
  std::vector<etcd_op> ops;
  for (auto& kv : *existing)
    if (kv.key != base + "departed") {
      ops.push_back(etcd_op::erase(kv.key));
      deleted.push_back(kv.key);
    }
  ops.push_back(etcd_op::put(base + "departed", member));
  // Not if it started meanwhile.
  auto done = etcd.txn({etcd_compare::absent(base + "live")}, ops);
  if (!done) return std::move(done.error());
  if (!done->succeeded)
    return make_error(errc::conflict,
                      "member " + member + " started meanwhile: stop it first");
  return deleted;
}

caf::expected<std::map<uint32_t, std::string>> plan_decommission(
    const std::vector<replica_set>& sets, const std::vector<std::string>& live,
    const std::string& member) {
  // Copies each live member holds now.
  std::map<std::string, size_t> load;
  for (auto& m : live)
    if (m != member) load[m] = 0;
  for (auto& s : sets)
    for (auto* list : {&s.voters, &s.observers})
      for (auto& m : *list)
        if (auto i = load.find(m); i != load.end()) ++i->second;
  std::map<uint32_t, std::string> plan;
  std::vector<std::string> stuck;
  for (auto& s : sets) {
    if (!contains(s.voters, member) && !contains(s.observers, member))
      continue;
    std::string target;
    // A run that stopped half way left its target observing: keep it.
    for (auto& o : s.observers)
      if (o != member && load.count(o) > 0 && !contains(s.voters, o)) {
        target = o;
        break;
      }
    if (target.empty())
      for (auto& [m, n] : load)  // id order: the first of the least loaded
        if (!contains(s.voters, m) && !contains(s.observers, m) &&
            (target.empty() || n < load[target]))
          target = m;
    if (target.empty()) {
      stuck.push_back(std::to_string(s.shard));
      continue;
    }
    if (!contains(s.observers, target)) ++load[target];
    plan[s.shard] = target;
  }
  if (!stuck.empty())
    return make_error(errc::invalid_argument,
                      "no running member other than " + member +
                          " lacks a copy of shard(s) " + join(stuck) +
                          ": taking " + member +
                          " out would leave them fewer replicas; start "
                          "another member first");
  return plan;
}

replace_step next_replace_step(const replica_set& s,
                               const std::string& old_member,
                               const std::string& new_member) {
  bool old_votes = contains(s.voters, old_member);
  bool old_observes = contains(s.observers, old_member);
  bool new_votes = contains(s.voters, new_member);
  bool new_observes = contains(s.observers, new_member);
  auto not_established = [&] {
    return replace_step{replace_step::wait,
                        "no leader of voters " + join(s.voters) +
                            " committed its epoch yet"};
  };
  if (new_votes) {
    if (old_votes) {
      // Only a set that grew in its last change loses a member here: with
      // no change recorded, or after a removal, the new member was a voter
      // beside the old one already, and removing the old one would shrink
      // the set (the other of two racing replacements removed its member
      // first).
      if (s.previous.empty() || s.voters.size() <= s.previous.size())
        return {replace_step::refused,
                new_member + " votes for shard " + std::to_string(s.shard) +
                    " already, beside " + old_member + " (voters " +
                    join(s.voters) + ", before the last change " +
                    join(s.previous) + "): removing " + old_member +
                    " would leave " + std::to_string(s.voters.size() - 1) +
                    " voters; `mnemo-cluster replicas remove` shrinks a set "
                    "on purpose"};
      return s.established ? replace_step{replace_step::remove_old, {}}
                           : not_established();
    }
    if (old_observes) return {replace_step::unobserve_old, {}};
    return {replace_step::done, {}};
  }
  // The old member held no copy: nothing to replace (unless a run that
  // stopped half way left the new one observing, which it finishes).
  if (!old_votes && !new_observes)
    return old_observes ? replace_step{replace_step::unobserve_old, {}}
                        : replace_step{replace_step::done, {}};
  if (!new_observes) return {replace_step::observe_new, {}};
  if (!contains(s.ready, new_member))
    return {replace_step::wait,
            new_member + " is catching up" +
                (s.leader.empty() ? " (the shard has no leader now)" : "")};
  if (!s.established) return not_established();
  return {replace_step::promote_new, {}};
}

caf::expected<std::pair<replace_step, replica_set>> take_replace_step(
    etcd_client& etcd, const std::string& prefix, const replica_set& s,
    const std::string& old_member, const std::string& new_member) {
  for (auto* id : {&old_member, &new_member})
    if (id->empty() || id->find('/') != std::string::npos)
      return refused(s, "'" + *id + "' is no member id");
  if (old_member == new_member)
    return refused(s, "a member cannot replace itself");
  auto step = next_replace_step(s, old_member, new_member);
  caf::expected<replica_set> after{s};
  switch (step.what) {
    case replace_step::done:
    case replace_step::wait:
    case replace_step::refused:
      return std::make_pair(std::move(step), s);
    case replace_step::observe_new:
      after = observe_from(etcd, prefix, s, new_member);
      break;
    case replace_step::promote_new:
      after = promote_from(etcd, prefix, s, new_member);
      break;
    case replace_step::remove_old:
      after = remove_voter_from(etcd, prefix, s, old_member);
      break;
    case replace_step::unobserve_old:
      after = unobserve_from(etcd, prefix, s, old_member);
      break;
  }
  if (!after) {
    if (!is(after.error(), errc::conflict)) return std::move(after.error());
    return std::make_pair(
        replace_step{replace_step::wait,
                     "another change was made meanwhile: " +
                         describe(after.error())},
        s);
  }
  return std::make_pair(std::move(step), std::move(*after));
}

caf::expected<std::pair<replace_step, replica_set>> replace_member(
    etcd_client& etcd, const std::string& prefix, uint32_t shard,
    const std::string& old_member, const std::string& new_member) {
  auto s = read_replica_set(etcd, prefix, shard);
  if (!s) return std::move(s.error());
  return take_replace_step(etcd, prefix, *s, old_member, new_member);
}

bool removed_by_change(const std::vector<std::string>& voters,
                       const std::vector<std::string>& observers,
                       const std::vector<std::string>& previous,
                       const std::string& member) {
  return !contains(voters, member) && !contains(observers, member) &&
         contains(previous, member);
}

}  // namespace mnemo::runtime::coordination
