#include "mnemo/runtime/coordination/shard_coordinator.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string_view>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <nlohmann/json.hpp>

#include "mnemo/persistence/replica_log.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/coordination/replica_sets.hpp"
#include "mnemo/runtime/replication/replicator.hpp"
#include "shard_keys.hpp"

namespace mnemo::runtime::coordination {

namespace {

using clock = std::chrono::steady_clock;
namespace repl = mnemo::runtime::replication;
using namespace shard_keys;

// A third of the lease's TTL: how often the lease is renewed, and the
// margin by which a member stops leading before its lease could end.
std::chrono::milliseconds third_of(std::chrono::seconds ttl) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(ttl) / 3;
}

std::string hex(int64_t x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(x));
  return buf;
}

}  // namespace

std::string shard_map_json(uint32_t shards, size_t replicas,
                           const std::vector<std::vector<std::string>>& sets,
                           size_t factor) {
  nlohmann::json map{{"shards", shards}, {"replicas", replicas}, {"sets", sets}};
  if (factor != 0) map["factor"] = factor;
  return map.dump();
}

namespace {

// What differs between two shard maps, in words; empty if they agree.
// The shard count must agree (it places every entity), and so must the
// replication factor (members with another one refuse each other at
// join). The replica sets need not: they are the bootstrap of each
// shard's voters key, made from etcd's map (never from a member's), and a
// member started with another member list (seeds plus itself, a member
// added later) derives other sets. A map without the factor (made by an
// older build) is compared on its `replicas`, the factor capped at the
// first member's list.
std::string map_difference(const std::string& etcd_text,
                           const std::string& mine_text) {
  auto etcd = nlohmann::json::parse(etcd_text, nullptr, false);
  auto mine = nlohmann::json::parse(mine_text, nullptr, false);
  if (etcd.is_discarded() || !etcd.is_object() || !etcd.contains("sets"))
    return "etcd holds no shard map this build reads: " + etcd_text;
  auto field = [&](const char* name) {
    auto a = etcd.value(name, nlohmann::json{});
    auto b = mine.value(name, nlohmann::json{});
    if (a == b) return std::string{};
    return std::string{name} + ": etcd has " + a.dump() + ", this member " +
           b.dump();
  };
  if (auto differs = field("shards"); !differs.empty()) return differs;
  bool both_factors = etcd.contains("factor") && mine.contains("factor");
  return field(both_factors ? "factor" : "replicas");
}

}  // namespace

caf::expected<std::unique_ptr<shard_coordinator>> shard_coordinator::start(
    caf::actor_system& sys, caf::actor replicator,
    coordinator_settings settings, coordinator_log log) {
  // A renewal must be able to fail and be retried within the margin by
  // which the member steps down before its lease can expire.
  auto margin = third_of(settings.lease_ttl);
  settings.etcd.request_timeout =
      std::min(settings.etcd.request_timeout, margin);
  // Bad settings fail here; an etcd that does not answer yet is tried
  // again by the threads (each connects its own client).
  auto client = etcd_client::connect(settings.etcd);
  if (!client && is(client.error(), errc::invalid_argument))
    return std::move(client.error());
  std::unique_ptr<shard_coordinator> c{new shard_coordinator};
  c->sys_ = &sys;
  c->replicator_ = std::move(replicator);
  c->cfg_ = std::move(settings);
  c->log_ = log ? std::move(log) : [](const std::string&, const std::string&) {};
  if (client)
    c->etcd_ = std::move(*client);
  else
    c->log_("etcd_unavailable", describe(client.error()) + " (trying again)");
  for (auto& [shard, replicas] : c->cfg_.replicas) {
    c->view_[shard] = shard_leadership{shard, false, 0, {}};
    // Without a shard map nothing is kept in etcd: the given replicas are
    // the voters (a voters key that does not exist has mod revision 0).
    if (c->cfg_.shard_map.empty() && !replicas.empty())
      c->configs_[shard] = shard_config{replicas, 0, true, {}, {}};
  }
  // The dropper first: the coordinator's thread asks whether it runs.
  if (c->cfg_.journal && !c->cfg_.shard_map.empty())
    c->dropper_ = std::thread{[p = c.get()] { p->drop_loop(); }};
  c->renewer_ = std::thread{[p = c.get()] { p->renew_loop(); }};
  c->thread_ = std::thread{[p = c.get()] { p->run(); }};
  c->watchdog_ = std::thread{[p = c.get()] { p->watch(); }};
  return c;
}

shard_coordinator::~shard_coordinator() {
  if (!abandoned_) {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (renewer_.joinable()) renewer_.join();
    if (watchdog_.joinable()) watchdog_.join();
    drop_cv_.notify_all();
    if (dropper_.joinable()) dropper_.join();
    step_down_all("stopping");
    if (auto lease = lease_.load(); lease != 0 && lease_etcd_)
      lease_etcd_->revoke(lease);
  }
}

void shard_coordinator::abandon() {
  abandoned_ = true;
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (renewer_.joinable()) renewer_.join();
  if (watchdog_.joinable()) watchdog_.join();
  drop_cv_.notify_all();
  if (dropper_.joinable()) dropper_.join();
}

void shard_coordinator::watch() {
  while (!stop_) {
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
    auto until = lead_until_ns_.load();
    if (until != 0 && clock::now().time_since_epoch().count() >= until)
      step_down_all("the member's lease could not be renewed in time");
  }
}

std::string shard_coordinator::shard_map_error() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return map_error_;
}

bool shard_coordinator::etcd_failed(const caf::error& err) {
  log_("etcd_unavailable", describe(err));
  std::this_thread::sleep_for(cfg_.poll);
  return false;
}

bool shard_coordinator::check_shard_map() {
  if (cfg_.shard_map.empty()) return true;
  auto key = cfg_.prefix + "/shard-map";
  auto got = etcd_->get(key);
  if (!got) {
    return etcd_failed(got.error());
  }
  std::string etcd_text;
  if (*got) {
    etcd_text = (*got)->value;
  } else {
    // The first member here records the map; the others compare theirs.
    auto made = etcd_->create(key, cfg_.shard_map);
    if (!made) {
      return etcd_failed(made.error());
    }
    if (!made->succeeded) return false;  // another member was first: compare
    log_("shard_map_created", key + ": " + cfg_.shard_map);
    etcd_text = cfg_.shard_map;
  }
  // A member with another shard count would place entities on other
  // shards than the rest: it takes no part. Replica sets are not compared:
  // every member counts majorities over etcd's voters keys, created from
  // etcd's map below (never from this member's), so a member started with
  // another member list agrees with the rest on every quorum.
  auto differs = map_difference(etcd_text, cfg_.shard_map);
  std::vector<std::vector<std::string>> sets;
  if (differs.empty()) {
    try {
      sets = nlohmann::json::parse(etcd_text)
                 .at("sets")
                 .get<std::vector<std::vector<std::string>>>();
    } catch (const nlohmann::json::exception&) {
      differs = "etcd holds no shard map this build reads: " + etcd_text;
    }
  }
  bool first_time = false;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (!differs.empty()) differs = key + " differs from this member's: " + differs;
    first_time = differs != map_error_;
    map_error_ = differs;
  }
  if (!differs.empty()) {
    // Stays out of every election, and its replicator answers no leader,
    // until the configurations agree; said once per difference.
    if (first_time)
      log_("shard_map_mismatch",
           differs + "; this member takes no part until they agree");
    std::this_thread::sleep_for(cfg_.poll);
    return false;
  }
  return bootstrap_voters(sets);
}

bool shard_coordinator::bootstrap_voters(
    const std::vector<std::vector<std::string>>& sets) {
  auto base = cfg_.prefix + "/shards/";
  auto all = etcd_->get_prefix(base);
  if (!all) {
    return etcd_failed(all.error());
  }
  std::set<uint32_t> have;
  for (auto& kv : *all)
    if (auto shard = voters_shard(std::string_view{kv.key}.substr(base.size())))
      have.insert(*shard);
  std::vector<uint32_t> missing;
  for (uint32_t shard = 0; shard < sets.size(); ++shard)
    if (have.count(shard) == 0 && !sets[shard].empty()) missing.push_back(shard);
  // Each key is created only where there is none: a member that gets here
  // at the same time, or an operator's change, wins, and this one reads
  // again. At most 64 shards per transaction (etcd takes 128 operations).
  constexpr size_t chunk = 64;
  for (size_t i = 0; i < missing.size(); i += chunk) {
    std::vector<etcd_compare> compare;
    std::vector<etcd_op> puts;
    for (size_t k = i; k < missing.size() && k < i + chunk; ++k) {
      auto key = base + std::to_string(missing[k]) + "/voters";
      compare.push_back(etcd_compare::absent(key));
      puts.push_back(etcd_op::put(key, voters_json(sets[missing[k]])));
    }
    auto done = etcd_->txn(compare, puts);
    if (!done) {
      return etcd_failed(done.error());
    }
    if (!done->succeeded) {
      std::this_thread::sleep_for(cfg_.poll);
      return false;
    }
  }
  if (!missing.empty())
    log_("shard_voters_created",
         std::to_string(missing.size()) + " shard(s), from " + cfg_.prefix +
             "/shard-map");
  return true;
}

namespace {

// Whether a key found unreadable at `revision` was said already; records
// it if not (each unreadable value is logged once).
bool said_before(std::map<uint32_t, int64_t>& said, uint32_t shard,
                 int64_t revision) {
  auto [i, added] = said.emplace(shard, revision);
  if (!added && i->second == revision) return true;
  i->second = revision;
  return false;
}

}  // namespace

void shard_coordinator::read_configs(const std::vector<etcd_kv>& shard_keys) {
  auto base = cfg_.prefix + "/shards/";
  std::set<uint32_t> seen;
  std::map<uint32_t, std::vector<std::string>> observers;
  for (auto& kv : shard_keys) {
    std::string_view rest{kv.key};
    rest.remove_prefix(base.size());
    if (auto observed = observers_shard(rest)) {
      std::string why;
      auto members = parse_observers(kv.value, why);
      if (members) {
        observers[*observed] = std::move(*members);
        observer_errors_.erase(*observed);
        continue;
      }
      if (said_before(observer_errors_, *observed, kv.mod_revision)) continue;
      log_("shard_observers_invalid",
           kv.key + " holds no list of members (" + why + "): " + kv.value +
               "; shard " + std::to_string(*observed) + " has no observers");
      continue;
    }
    auto shard = voters_shard(rest);
    if (!shard) continue;
    seen.insert(*shard);
    std::string why;
    auto voters = parse_voters(kv.value, why);
    auto& config = configs_[*shard];
    if (voters) {
      config = shard_config{std::move(voters->voters), kv.mod_revision, true,
                            {}, std::move(voters->previous)};
      config_errors_.erase(*shard);
      continue;
    }
    config.current = false;
    if (said_before(config_errors_, *shard, kv.mod_revision)) continue;
    log_("shard_voters_invalid",
         kv.key + " holds no voter list (" + why + "): " + kv.value +
             "; no member becomes a candidate for shard " +
             std::to_string(*shard) + " until it does");
  }
  for (auto& [shard, config] : configs_) {
    // A voter is no observer of its shard.
    auto& o = observers[shard];
    o.erase(std::remove_if(o.begin(), o.end(),
                           [&](const std::string& m) {
                             return contains(config.voters, m);
                           }),
            o.end());
    config.observers = std::move(o);
    if (cfg_.on_replicas && !config.voters.empty()) {
      auto copies = config.voters;
      copies.insert(copies.end(), config.observers.begin(),
                    config.observers.end());
      auto& told = replicas_told_[shard];
      if (told != copies) {
        told = copies;
        cfg_.on_replicas(shard, told);
      }
    }
    if (seen.count(shard) == 0 && config.current) {
      config.current = false;
      log_("shard_voters_missing",
           base + std::to_string(shard) +
               "/voters is gone; no member becomes a candidate for shard " +
               std::to_string(shard) + " until it is back");
    }
  }
}

bool shard_coordinator::voter_of(uint32_t shard) const {
  auto c = configs_.find(shard);
  return c != configs_.end() && contains(c->second.voters, cfg_.member);
}

void shard_coordinator::leave(uint32_t shard, const std::string& own_key) {
  bool led = false;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto v = view_.find(shard);
    if (v == view_.end()) return;
    led = v->second.leading || pending_.count(shard) > 0;
    pending_.erase(shard);
    view_.erase(v);
    publish_locked(shard, "");
  }
  if (led) caf::anon_send(replicator_, repl::repl_resign_atom::value, shard);
  if (observers_told_.erase(shard) > 0)
    caf::anon_send(replicator_, repl::repl_observers_atom::value, shard,
                   std::vector<std::string>{});
  etcd_->erase(own_key);
  withdrawn_.erase(shard);
  preferred_seen_.erase(shard);
  leading_since_.erase(shard);
  log_("shard_left", "shard " + std::to_string(shard) +
                         ": this member is no voter of it in etcd");
}

std::vector<shard_leadership> shard_coordinator::leadership() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<shard_leadership> out;
  for (auto& [shard, view] : view_) out.push_back(view);
  return out;
}

void shard_coordinator::step_down_all(const std::string& why) {
  std::vector<uint32_t> led;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& [shard, view] : view_)
      if (view.leading || pending_.count(shard) > 0) {
        view.leading = false;
        led.push_back(shard);
        publish_locked(shard, view.leader);
      }
    pending_.clear();
  }
  for (auto shard : led) {
    caf::anon_send(replicator_, repl::repl_resign_atom::value, shard);
    log_("shard_step_down", "shard " + std::to_string(shard) + ": " + why);
  }
}

void shard_coordinator::publish_locked(uint32_t shard,
                                       const std::string& etcd_leader) {
  if (!cfg_.on_leader) return;
  auto target = etcd_leader;
  if (target == cfg_.member)
    if (auto v = view_.find(shard); v == view_.end() || !v->second.leading)
      target.clear();  // not (yet, or any longer)
  auto [i, added] = published_.emplace(shard, target);
  if (!added) {
    if (i->second == target) return;
    i->second = target;
  } else if (target.empty()) {
    return;
  }
  cfg_.on_leader(shard, target);
}

bool shard_coordinator::lease_short() const noexcept {
  auto until = lead_until_ns_.load();
  return until == 0 || clock::now().time_since_epoch().count() >= until;
}

void shard_coordinator::renew(clock::time_point now) {
  auto ttl = cfg_.lease_ttl;
  auto lease = lease_.load();
  if (lease == 0) {
    auto granted = lease_etcd_->grant(ttl);
    if (!granted) {
      log_("etcd_unavailable", describe(granted.error()));
      return;
    }
    lease_valid_until_ = now + granted->ttl;
    last_renewal_ = now;
    lead_until_ns_ =
        (lease_valid_until_ - third_of(ttl)).time_since_epoch().count();
    lease_ = granted->id;
    log_("lease_granted", hex(granted->id));
    return;
  }
  if (now - last_renewal_ < third_of(ttl)) return;
  auto renewed = lease_etcd_->keep_alive(lease);
  if (renewed) {
    lease_valid_until_ = now + *renewed;
    last_renewal_ = now;
    lead_until_ns_ =
        (lease_valid_until_ - third_of(ttl)).time_since_epoch().count();
  } else if (is(renewed.error(), errc::not_found)) {
    lead_until_ns_ = 0;
    lease_ = 0;
    step_down_all("the member's lease expired");
    log_("lease_lost", hex(lease));
  } else {
    log_("etcd_unavailable", describe(renewed.error()));
  }
}

bool shard_coordinator::connected(std::unique_ptr<etcd_client>& client) {
  if (client) return true;
  auto c = etcd_client::connect(cfg_.etcd);
  if (!c) {
    std::this_thread::sleep_for(cfg_.poll);
    return false;
  }
  client = std::move(*c);
  return true;
}

void shard_coordinator::renew_loop() {
  while (!stop_) {
    if (!connected(lease_etcd_)) continue;
    renew(clock::now());
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
}

void shard_coordinator::look() {
  auto base = cfg_.prefix + "/shards/";
  // The candidates are read again only when etcd's revision moved: in a
  // steady cluster each look is one small request, not a range of every
  // shard's candidates (three members polling 10 times a second took 5 %
  // of the CPU in cluster_bench, in etcd and in JSON). The revision is
  // taken before the range, so a change in between is read next time.
  // After any failure the candidates are read again (an etcd restored
  // from a backup could reach the same revision with other keys).
  auto failed = [this](const caf::error& err) {
    looked_at_ = 0;
    log_("etcd_unavailable", describe(err));
  };
  auto rev = etcd_->revision(base);
  if (!rev) return failed(rev.error());
  if (*rev != looked_at_) {
    auto all = etcd_->get_prefix(base);
    if (!all) return failed(all.error());
    // The member directory moves the same revision (rarely: a member
    // starting on another address).
    if (cfg_.on_address) {
      auto members = etcd_->get_prefix(cfg_.prefix + "/members/");
      if (!members) return failed(members.error());
      read_addresses(*members);
    }
    // Each shard's voters, read in the same range as its candidates: a
    // candidacy below is bound to the voters it was made under.
    if (!cfg_.shard_map.empty()) read_configs(*all);
    looked_ = std::move(*all);
    looked_at_ = *rev;
  }
  // The candidates of each shard, oldest first (the range is sorted by
  // create revision).
  std::map<uint32_t, std::vector<const etcd_kv*>> candidates;
  // The observers' ready keys of each shard, by member, and the revision
  // of the voters that a leader established (R4).
  std::map<uint32_t, std::map<std::string, const etcd_kv*>> ready;
  std::map<uint32_t, std::string> established;
  for (auto& kv : looked_) {
    std::string_view rest{kv.key};
    rest.remove_prefix(base.size());
    if (auto shard = candidate_shard(rest))
      candidates[*shard].push_back(&kv);
    else if (auto r = ready_key(rest))
      ready[r->first][r->second] = &kv;
    else if (auto e = established_shard(rest))
      established[*e] = kv.value;
  }
  {
    // Shards this member does not replicate: where their commands go.
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& [shard, list] : candidates)
      if (!voter_of(shard)) publish_locked(shard, list.front()->value);
    for (auto& [shard, member] : published_)
      if (!voter_of(shard) && candidates.count(shard) == 0)
        publish_locked(shard, "");
  }
  // Shards this member was a voter of and is no longer (by etcd's voters
  // keys): it leaves them.
  {
    std::vector<uint32_t> gone;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      for (auto& [shard, view] : view_)
        if (!voter_of(shard)) gone.push_back(shard);
    }
    for (auto shard : gone)
      leave(shard, base + std::to_string(shard) + "/candidates/" +
                       hex(lease_.load()));
    // A candidacy left behind by a leave whose delete failed goes now:
    // while it is the oldest, the others would follow a member that does
    // not lead.
    auto own_suffix = "/candidates/" + hex(lease_.load());
    for (auto& [shard, list] : candidates)
      if (!voter_of(shard))
        for (auto* kv : list)
          if (kv->key == base + std::to_string(shard) + own_suffix)
            etcd_->erase(kv->key, kv->create_revision);
  }
  if (dropper_.joinable()) queue_drops(established);
  auto now = clock::now();
  auto lease = lease_.load();
  if (lease != seen_lease_) {  // a new lease: no candidacy of it yet
    seen_lease_ = lease;
    lease_seen_at_ = now;
  }
  // What the replicator leads, asked once per look (when needed).
  std::optional<std::map<uint32_t, uint64_t>> replicator_leads;
  auto leads = [&](uint32_t shard, uint64_t epoch) {
    if (!replicator_leads) {
      replicator_leads.emplace();
      caf::scoped_actor self{*sys_};
      bool answered = false;
      self->request(replicator_, std::chrono::seconds{2},
                    repl::repl_leading_atom::value)
          .receive(
              [&](const std::vector<uint64_t>& pairs) {
                answered = true;
                for (size_t i = 0; i + 1 < pairs.size(); i += 2)
                  (*replicator_leads)[static_cast<uint32_t>(pairs[i])] =
                      pairs[i + 1];
              },
              [&](caf::error&) {});
      if (!answered) replicator_leads.reset();
      if (!answered) return true;  // no answer: assume nothing changed
    }
    auto i = replicator_leads->find(shard);
    return i != replicator_leads->end() && i->second == epoch;
  };
  std::vector<lead_request> to_lead;
  for (auto& [shard, config] : configs_) {
    if (lease_short()) break;  // the watchdog steps down
    if (!voter_of(shard)) continue;
    const auto& replicas = config.voters;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      view_.try_emplace(shard, shard_leadership{shard, false, 0, {}});
    }
    // The replicator keeps a shard's observers across leaderships: told
    // when they change, it ships to them whenever it leads.
    if (auto& told = observers_told_[shard]; told != config.observers) {
      told = config.observers;
      caf::anon_send(replicator_, repl::repl_observers_atom::value, shard,
                     told);
    }
    auto own_key = base + std::to_string(shard) + "/candidates/" + hex(lease);
    auto& list = candidates[shard];
    bool mine_listed = false;
    for (auto* kv : list) mine_listed |= kv->key == own_key;
    if (!mine_listed) {
      // Its candidacy is gone while it leads: a change of the shard's
      // voters deleted it (R2), or an operator did. Its term is over; the
      // next leader's recovery fences what is left of it (R3).
      bool was_leading = false;
      {
        std::lock_guard<std::mutex> guard{mtx_};
        auto& v = view_[shard];
        was_leading = v.leading;
        if (was_leading) {
          v.leading = false;
          publish_locked(shard, "");
        }
      }
      if (was_leading) {
        caf::anon_send(replicator_, repl::repl_resign_atom::value, shard);
        leading_since_.erase(shard);
        log_("shard_step_down", "shard " + std::to_string(shard) +
                                    ": its candidacy is gone from etcd");
      }
      auto w = withdrawn_.find(shard);
      // A shard without candidates waits a TTL for its preferred replica
      // (the first), so that leadership spreads over the members instead
      // of going to whoever got a lease first; once any replica is a
      // candidate, the others queue behind it at once (for failover).
      bool preferred = replicas.empty() || replicas.front() == cfg_.member;
      bool defer = !preferred && list.empty() &&
                   now - lease_seen_at_ < cfg_.lease_ttl;
      // Bound to the voters as read (docs/replica-set-changes.md, R2):
      // after a change of them, no candidacy made under the old ones is
      // created; while they cannot be read, none at all.
      if (!defer && config.current &&
          (w == withdrawn_.end() || now >= w->second)) {
        withdrawn_.erase(shard);
        etcd_->txn({etcd_compare::absent(own_key),
                    etcd_compare::changed_at(
                        base + std::to_string(shard) + "/voters",
                        config.revision)},
                   {etcd_op::put(own_key, cfg_.member, lease)});
      }
    }
    if (list.empty()) {
      std::lock_guard<std::mutex> guard{mtx_};
      publish_locked(shard, "");
      continue;
    }
    auto* first = list.front();
    bool ours = first->key == own_key;
    // Preferred-leader election. The preferred replica's key, if it is a
    // candidate behind another one, and since when it has been seen.
    // `list` is oldest first: positions are places in the queue.
    auto place_of = [&list](auto pred) {
      return std::find_if(list.begin(), list.end(), pred) - list.begin();
    };
    auto preferred_at = place_of(
        [&](const etcd_kv* kv) { return kv->value == replicas.front(); });
    bool preferred_self = replicas.empty() || replicas.front() == cfg_.member;
    const etcd_kv* preferred_kv = nullptr;
    if (!preferred_self && cfg_.rebalance_after.count() > 0 &&
        preferred_at > 0 && preferred_at < static_cast<std::ptrdiff_t>(list.size()))
      preferred_kv = list[static_cast<size_t>(preferred_at)];
    if (preferred_kv == nullptr) {
      preferred_seen_.erase(shard);
    } else {
      auto& seen = preferred_seen_[shard];
      if (seen.first != preferred_kv->key) seen = {preferred_kv->key, now};
      // A candidate that does not lead but queues ahead of the preferred
      // replica queues again behind it (nothing to hand over).
      auto own_at =
          place_of([&](const etcd_kv* kv) { return kv->key == own_key; });
      if (!ours && mine_listed && own_at < preferred_at) {
        etcd_->erase(own_key);
        log_("shard_requeued", "shard " + std::to_string(shard) +
                                   ": behind its preferred replica " +
                                   replicas.front());
      }
    }
    int64_t epoch = first->create_revision;
    bool leading = false;
    bool changed = false;  // another leader or epoch than the last look's
    {
      std::lock_guard<std::mutex> guard{mtx_};
      auto& v = view_[shard];
      leading = v.leading && v.epoch == epoch;
      changed = v.epoch != epoch || v.leader != first->value;
      if (!ours && v.leading) {
        v.leading = false;
        caf::anon_send(replicator_, repl::repl_resign_atom::value, shard);
        log_("shard_step_down", "shard " + std::to_string(shard) +
                                    ": member " + first->value + " leads");
      }
      v.epoch = epoch;
      v.leader = first->value;
      publish_locked(shard, v.leader);
    }
    if (!ours) {
      // Once per leader and epoch, not on every look.
      if (changed)
        caf::anon_send(replicator_, repl::repl_follow_atom::value, shard,
                       first->value);
      continue;
    }
    if (leading && preferred_kv != nullptr) {
      auto since = leading_since_.find(shard);
      auto& seen = preferred_seen_[shard];
      if (since != leading_since_.end() &&
          now - since->second >= cfg_.rebalance_after &&
          now - seen.second >= cfg_.rebalance_after &&
          preferred_ready(shard, replicas.front())) {
        hand_over(shard, epoch, own_key);
        continue;
      }
    }
    if (leading) {
      // The replicator may have stepped down on its own (a follower had
      // promised a newer epoch): then this candidacy goes, so that the
      // shard gets a leader again. (One question per look for all shards.)
      if (leads(shard, static_cast<uint64_t>(epoch))) {
        if (config.current && !cfg_.shard_map.empty() &&
            established[shard] != std::to_string(config.revision))
          establish(shard, epoch, config);
        if (!config.observers.empty() || ready.count(shard) > 0)
          mark_ready(shard, config, ready[shard]);
        continue;
      }
      {
        std::lock_guard<std::mutex> guard{mtx_};
        view_[shard].leading = false;
        publish_locked(shard, view_[shard].leader);
      }
      log_("shard_step_down", "shard " + std::to_string(shard) +
                                  ": its replicator no longer leads it");
      etcd_->erase(own_key, epoch);
      withdrawn_[shard] = clock::now() + cfg_.retry_after;
      continue;
    }
    // This member's key is the oldest: lead, after the replicator has
    // recovered the shard from a majority (below, for all such shards at
    // once).
    std::vector<std::string> followers;
    for (auto& r : replicas)
      if (r != cfg_.member) followers.push_back(r);
    {
      // The watchdog resigns it too if the lease runs short while the
      // replicator recovers the shard.
      std::lock_guard<std::mutex> guard{mtx_};
      pending_.insert(shard);
    }
    // Until a leader of these voters committed its epoch, acknowledged
    // records may lie on a majority of the previous voters only: the
    // recovery then takes a majority of voters, not fewer beside learners.
    bool strict = !cfg_.shard_map.empty() &&
                  established[shard] != std::to_string(config.revision);
    to_lead.push_back({shard, epoch, own_key, std::move(followers), strict});
  }
  lead(to_lead);
}

void shard_coordinator::queue_drops(
    const std::map<uint32_t, std::string>& established) {
  bool queued = false;
  {
    std::lock_guard<std::mutex> guard{drop_mtx_};
    for (auto& [shard, config] : configs_) {
      // Unreadable keys say nothing: held until they do. And only a copy
      // that an explicit change removed is dropped (removed_by_change).
      held_[shard] = !config.current || observer_errors_.count(shard) ||
                     !removed_by_change(config.voters, config.observers,
                                        config.previous, cfg_.member);
      if (held_[shard]) {
        dropped_.erase(shard);
        continue;
      }
      // Only once a leader of the voters without it committed its epoch:
      // until then an abort may make it a voter again, and recoveries may
      // still need what it holds.
      auto e = established.find(shard);
      if (e == established.end() || e->second != std::to_string(config.revision) ||
          dropped_.count(shard) > 0)
        continue;
      queued |= drop_queue_.insert(shard).second;
    }
  }
  if (queued) drop_cv_.notify_one();
}

void shard_coordinator::drop_loop() {
  std::unique_lock<std::mutex> lock{drop_mtx_};
  // Failures by shard: said once each, tried again after a while.
  std::map<uint32_t, clock::time_point> failed;
  // Its own connection: before each chunk it reads the shard's replica set
  // again (the coordinator's view may be a poll old, or older while etcd
  // does not answer).
  std::unique_ptr<etcd_client> etcd;
  while (!stop_) {
    drop_cv_.wait_for(lock, std::chrono::milliseconds{200},
                      [this] { return stop_ || !drop_queue_.empty(); });
    if (stop_) break;
    if (drop_queue_.empty()) continue;
    auto shard = *drop_queue_.begin();
    drop_queue_.erase(drop_queue_.begin());
    if (auto f = failed.find(shard);
        f != failed.end() && clock::now() < f->second)
      continue;  // queued again by the next look after the wait
    lock.unlock();
    persistence::replica_log copy{*cfg_.journal, shard};
    // The promise first, then etcd: a leader that synced this copy after
    // an abort or a re-add promised a newer epoch, which fails the chunk;
    // one that synced it before is seen in etcd's set (linearizable reads).
    auto permit = [this, shard, &copy, &etcd]() -> std::optional<uint64_t> {
      {
        std::lock_guard<std::mutex> guard{drop_mtx_};
        if (stop_ || held_[shard]) return std::nullopt;
      }
      auto promise = copy.promised_epoch();
      if (!promise) return std::nullopt;
      if (!etcd) {
        auto c = etcd_client::connect(cfg_.etcd);
        if (!c) return std::nullopt;
        etcd = std::move(*c);
      }
      auto s = read_replica_set(*etcd, cfg_.prefix, shard);
      if (!s || !s->established ||
          !removed_by_change(s->voters, s->observers, s->previous,
                             cfg_.member))
        return std::nullopt;
      return *promise;
    };
    auto removed = copy.drop(cfg_.drop_chunk, permit);
    auto end = copy.end_position();
    lock.lock();
    if (!removed || !end) {
      if (failed.count(shard) == 0)
        log_("shard_copy_drop_failed",
             "shard " + std::to_string(shard) + ": " +
                 (removed ? end.error() : removed.error()).to_string() +
                 " (tried again every 10 s)");
      failed[shard] = clock::now() + std::chrono::seconds{10};
      continue;
    }
    failed.erase(shard);
    if (*end == 0 && !held_[shard]) dropped_.insert(shard);
    if (*removed > 0)
      log_(*end == 0 ? "shard_copy_dropped" : "shard_copy_drop_stopped",
           "shard " + std::to_string(shard) + ": " + std::to_string(*removed) +
               " record(s) of this member's copy removed" +
               (*end == 0 ? std::string{" (it is no replica of the shard)"}
                          : ", " + std::to_string(*end) +
                                " kept: it is a replica again"));
  }
}

void shard_coordinator::establish(uint32_t shard, int64_t epoch,
                                   const shard_config& config) {
  // Only a leader elected under these voters: its candidacy was created
  // after them (R2), so its epoch is newer. A leader of older voters (a
  // hand edit keeps candidacies) must not vouch for them.
  if (epoch <= config.revision) return;
  caf::scoped_actor self{*sys_};
  bool committed = false;
  self->request(replicator_, std::chrono::seconds{1},
                repl::repl_marker_committed_atom::value, shard,
                static_cast<uint64_t>(epoch))
      .receive([&](bool c) { committed = c; }, [](caf::error&) {});
  if (!committed) return;
  // Only for the voters this epoch was elected under: a change since then
  // fails the comparison (and deleted this member's candidacy).
  auto base = cfg_.prefix + "/shards/" + std::to_string(shard) + "/";
  auto done = etcd_->txn(
      {etcd_compare::changed_at(base + "voters", config.revision)},
      {etcd_op::put(base + "established", std::to_string(config.revision))});
  if (done && done->succeeded)
    log_("shard_voters_established",
         "shard " + std::to_string(shard) + " epoch " + std::to_string(epoch) +
             ": voters of revision " + std::to_string(config.revision));
}

void shard_coordinator::mark_ready(
    uint32_t shard, const shard_config& config,
    const std::map<std::string, const etcd_kv*>& have) {
  auto base = cfg_.prefix + "/shards/" + std::to_string(shard) + "/ready/";
  for (auto& [member, kv] : have)
    if (!contains(config.observers, member))
      etcd_->erase(kv->key, kv->create_revision);
  auto lease = lease_.load();
  for (auto& member : config.observers) {
    if (have.count(member) > 0 || !preferred_ready(shard, member)) continue;
    // Bound to this member's lease: a ready key says that a leader saw
    // the observer hold its commit point, and goes with that leader.
    if (etcd_->put(base + member, cfg_.member, lease))
      log_("shard_observer_ready", "shard " + std::to_string(shard) +
                                       ": observer " + member +
                                       " holds the commit point");
  }
}

bool shard_coordinator::preferred_ready(uint32_t shard,
                                        const std::string& member) {
  // Only to a replica that can take over at once: synced, a voter, holding
  // the commit point. A learner or a lagging replica would fail to recover
  // the shard, or take long, and the shard would be without a leader.
  caf::scoped_actor self{*sys_};
  bool ready = false;
  self->request(replicator_, std::chrono::seconds{1},
                repl::repl_ready_atom::value, shard, member)
      .receive([&](bool r) { ready = r; }, [](caf::error&) {});
  return ready;
}

void shard_coordinator::hand_over(uint32_t shard, int64_t epoch,
                                  const std::string& own_key) {
  // Commands stop coming here first (routers answer owner_unavailable at
  // once, nothing sent); what is in flight commits before this member
  // resigns, so that a handover fails no acknowledged-to-be append. While
  // it drains, the shard counts as pending: the watchdog still resigns it
  // if the lease runs short.
  {
    std::lock_guard<std::mutex> guard{mtx_};
    view_[shard].leading = false;
    pending_.insert(shard);
    publish_locked(shard, "");
  }
  caf::scoped_actor self{*sys_};
  auto deadline = clock::now() + std::chrono::seconds{1};
  for (bool drained = false;
       !drained && clock::now() < deadline && !lease_short();) {
    self->request(replicator_, std::chrono::seconds{1},
                  repl::repl_status_atom::value, shard)
        .receive(
            [&](bool is_leading, uint64_t, uint64_t end, uint64_t commit) {
              drained = !is_leading || commit >= end;
            },
            [&](caf::error&) { drained = true; });
    if (!drained) std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
  caf::anon_send(replicator_, repl::repl_resign_atom::value, shard);
  {
    std::lock_guard<std::mutex> guard{mtx_};
    pending_.erase(shard);
  }
  etcd_->erase(own_key, epoch);
  leading_since_.erase(shard);
  log_("shard_handed_over", "shard " + std::to_string(shard) + " epoch " +
                                std::to_string(epoch) +
                                " to its preferred replica");
}

void shard_coordinator::lead(std::vector<lead_request>& to_lead) {
  if (to_lead.empty()) return;
  if (lease_short()) {  // the watchdog steps down; ask for nothing
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& r : to_lead) pending_.erase(r.shard);
    return;
  }
  // The replicator recovers the shards side by side: all requests go out
  // before the first answer is awaited, so a member taking many shards
  // waits for the slowest recovery, not for their sum.
  caf::scoped_actor self{*sys_};
  using handle = decltype(self->request(
      replicator_, std::chrono::seconds{10}, repl::repl_lead_atom::value,
      uint32_t{0}, uint64_t{0}, std::vector<std::string>{}, false));
  std::vector<handle> handles;
  for (auto& r : to_lead)
    handles.push_back(self->request(replicator_, std::chrono::seconds{10},
                                    repl::repl_lead_atom::value, r.shard,
                                    static_cast<uint64_t>(r.epoch),
                                    r.followers, r.strict));
  for (size_t i = 0; i < to_lead.size(); ++i) {
    auto& r = to_lead[i];
    caf::error failed;
    handles[i].receive([] {},
                       [&](caf::error& err) { failed = std::move(err); });
    {
      std::lock_guard<std::mutex> guard{mtx_};
      bool still = pending_.erase(r.shard) > 0;
      if (!failed && still && !lease_short()) {
        leading_since_[r.shard] = clock::now();
        view_[r.shard].leading = true;
        publish_locked(r.shard, view_[r.shard].leader);
        log_("shard_leader", "shard " + std::to_string(r.shard) + " epoch " +
                                 std::to_string(r.epoch));
        continue;
      }
    }
    // Not now: let another replica try, and come back later.
    caf::anon_send(replicator_, repl::repl_resign_atom::value, r.shard);
    log_("shard_lead_failed", "shard " + std::to_string(r.shard) + ": " +
                                  (failed ? describe(failed)
                                          : std::string{"lease ran short"}));
    etcd_->erase(r.own_key, r.epoch);
    withdrawn_[r.shard] = clock::now() + cfg_.retry_after;
  }
}

bool shard_coordinator::check_identity() {
  auto key = cfg_.prefix + "/members/" + cfg_.member + "/replica";
  std::optional<etcd_kv> known;
  std::vector<uint64_t> learners;  // (shard, epoch) pairs
  if (!cfg_.replica_id.empty()) {
    auto got = etcd_->get(key);
    if (!got) {
      return etcd_failed(got.error());
    }
    known = std::move(*got);
    // The cluster knew this member with another directory: what that one
    // held, and helped acknowledge, is not here. Each shard's copy votes
    // again once a leader at least as new as today's (the oldest
    // candidate's key) brought it up to its commit point: an older one may
    // be deposed without knowing it.
    if (known && known->value != cfg_.replica_id) {
      // A revision newer than every epoch so far, for shards without a
      // candidate now (any leader from here on has a greater epoch).
      auto now_rev = etcd_->put(cfg_.prefix + "/members/" + cfg_.member +
                                    "/rebuilt",
                                cfg_.replica_id);
      if (!now_rev) {
        return etcd_failed(now_rev.error());
      }
      auto base = cfg_.prefix + "/shards/";
      auto all = etcd_->get_prefix(base);
      if (!all) {
        return etcd_failed(all.error());
      }
      std::map<uint32_t, int64_t> leader_epoch;  // oldest key first
      // Every shard this member is a voter of, by etcd's voters or by its
      // own options (a learner it does not replicate stays one, harmless).
      std::set<uint32_t> held;
      for (auto& [shard, replicas] : cfg_.replicas) held.insert(shard);
      for (auto& kv : *all) {
        std::string_view rest{kv.key};
        rest.remove_prefix(base.size());
        if (auto shard = candidate_shard(rest)) {
          leader_epoch.emplace(*shard, kv.create_revision);
        } else if (auto voted = voters_shard(rest)) {
          std::string why;
          auto voters = parse_voters(kv.value, why);
          if (voters && contains(voters->voters, cfg_.member))
            held.insert(*voted);
        } else if (auto observed = observers_shard(rest)) {
          std::string why;
          auto members = parse_observers(kv.value, why);
          if (members && contains(*members, cfg_.member))
            held.insert(*observed);
        }
      }
      for (auto shard : held) {
        learners.push_back(shard);
        auto e = leader_epoch.find(shard);
        learners.push_back(static_cast<uint64_t>(
            e == leader_epoch.end() ? *now_rev : e->second));
      }
    }
  }
  // The learners are marked (durably) before etcd learns the new id: a
  // crash in between finds the old id again and marks them again.
  caf::scoped_actor self{*sys_};
  caf::error failed;
  self->request(replicator_, std::chrono::seconds{10},
                repl::repl_identity_atom::value, learners)
      .receive([] {}, [&](caf::error& err) { failed = std::move(err); });
  if (failed) {
    log_("replica_identity_failed", describe(failed));
    std::this_thread::sleep_for(cfg_.poll);
    return false;
  }
  if (!cfg_.replica_id.empty() && (!known || !learners.empty())) {
    auto written = known ? etcd_->replace(key, cfg_.replica_id,
                                          known->mod_revision)
                         : etcd_->create(key, cfg_.replica_id);
    if (!written) {
      return etcd_failed(written.error());
    }
    if (!written->succeeded) {
      // Changed meanwhile (another process with this member id?): look
      // again.
      log_("replica_identity_changed",
           key + " changed while this member read it");
      return false;
    }
  }
  if (!learners.empty())
    log_("replica_rebuilt",
         "this member's data directory is new (" + cfg_.replica_id +
             ", etcd knew " + known->value + "): " +
             std::to_string(learners.size() / 2) +
             " shard(s) do not vote until they caught up");
  return true;
}

bool shard_coordinator::announce_protocol() {
  auto key = cfg_.prefix + "/members/" + cfg_.member + "/protocol";
  auto value = std::to_string(replica_protocol);
  auto got = etcd_->get(key);
  if (!got) return etcd_failed(got.error());
  if (*got && (*got)->value == value) return true;
  auto put = etcd_->put(key, value);
  if (!put) return etcd_failed(put.error());
  return true;
}

void shard_coordinator::announce_live() {
  auto lease = lease_.load();
  if (lease == 0 || lease == live_lease_) return;
  if (etcd_->put(cfg_.prefix + "/members/" + cfg_.member + "/live",
                 cfg_.member, lease))
    live_lease_ = lease;
}

bool shard_coordinator::announce_address() {
  if (cfg_.address.empty()) return true;
  // A wildcard is where to bind, not where to be reached: the others keep
  // their member lists' address for this member.
  auto host = cfg_.address.substr(0, cfg_.address.rfind(':'));
  if (host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]") {
    log_("member_address_not_recorded",
         "this member's address " + cfg_.address +
             " is a wildcard; the others use their member lists' address");
    return true;
  }
  auto key = cfg_.prefix + "/members/" + cfg_.member + "/address";
  auto got = etcd_->get(key);
  if (!got) return etcd_failed(got.error());
  if (*got && (*got)->value == cfg_.address) return true;
  // Only this member writes its key; the last start wins.
  auto put = etcd_->put(key, cfg_.address);
  if (!put) return etcd_failed(put.error());
  log_("member_address_recorded",
       key + ": " + cfg_.address +
           (*got ? " (was " + (*got)->value + ")" : std::string{}));
  return true;
}

void shard_coordinator::read_addresses(const std::vector<etcd_kv>& members) {
  auto base = cfg_.prefix + "/members/";
  auto member_of = [&base](const etcd_kv& kv, std::string_view suffix) {
    return member_key(std::string_view{kv.key}.substr(base.size()), suffix);
  };
  // Members taken out of the directory (forget_member); this member, if
  // it was one, is back.
  std::set<std::string> departed;
  for (auto& kv : members) {
    auto member = member_of(kv, "/departed");
    if (!member) continue;
    if (*member != cfg_.member) {
      departed.insert(*member);
    } else if (etcd_->erase(kv.key, kv.create_revision)) {
      log_("member_returned", "this member was taken out of the member "
                              "directory (" + kv.key + "); it is back");
    }
  }
  if (cfg_.on_departed) {
    for (auto& m : departed)
      if (!departed_.count(m)) cfg_.on_departed(m, true);
    for (auto& m : departed_)
      if (!departed.count(m)) cfg_.on_departed(m, false);
  }
  departed_ = std::move(departed);
  for (auto& kv : members) {
    auto found = member_of(kv, "/address");
    if (!found) continue;
    auto& member = *found;
    if (member == cfg_.member) {
      // Another process started with this member id wrote its address:
      // two processes with one id is an operator's mistake, said once.
      if (!cfg_.address.empty() && kv.value != cfg_.address &&
          kv.value != own_address_seen_) {
        own_address_seen_ = kv.value;
        log_("member_address_taken",
             "etcd says this member (" + cfg_.member + ") listens on " +
                 kv.value + ", not " + cfg_.address +
                 ": another process runs with this member id");
      }
      continue;
    }
    auto& told = addresses_[member];
    if (told == kv.value) continue;
    told = kv.value;
    cfg_.on_address(member, kv.value);
  }
}

void shard_coordinator::run() {
  while (!stop_) {
    if (!etcd_) {
      if (!connected(etcd_)) continue;
      log_("etcd_connected", "etcd answers");
    }
    if (!map_checked_) {
      map_checked_ = check_shard_map();
      if (!map_checked_) continue;
    }
    if (!identity_checked_) {
      identity_checked_ = check_identity();
      if (!identity_checked_) continue;
    }
    if (!protocol_announced_) {
      protocol_announced_ = announce_protocol();
      if (!protocol_announced_) continue;
    }
    if (!address_announced_) {
      address_announced_ = announce_address();
      if (!address_announced_) continue;
    }
    announce_live();
    if (lease_.load() != 0 && !lease_short()) look();
    std::this_thread::sleep_for(cfg_.poll);
  }
}

}  // namespace mnemo::runtime::coordination
