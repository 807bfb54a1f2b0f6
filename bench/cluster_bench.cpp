// cluster_bench: durable commands between cluster nodes on loopback. One
// JSON object per line.
//
//   cluster_bench [--quick] [--seconds S] [--in-flight N] [--no-tls]
//                 [--dir PATH] [--durability MODE]
//                 [--replicas R [--rounds K] [--kills N] [--rebuild]
//                  [--lease-ttl-s T]]
//
// Without --replicas: node A sends deposits for accounts that node B owns,
// through A's router, with `in_flight` requests outstanding; B persists
// them in its journal and the replies travel back.
//
// With --replicas R: three members and a real etcd (Debian's etcd-server,
// started on free loopback ports). Member n1 sends deposits to 1000
// accounts spread over every shard, through its router to each shard's
// leader (a third of them local). K rounds alternate the static cluster
// (unreplicated, the baseline) with the replicated one (each shard on R
// members, acknowledged once a majority holds it durably), fresh data each
// time, and one line compares them. --kills N then measures failover: N
// times, the leader of an account's shard dies without a word (its
// coordinator abandoned, its node stopped: its lease runs out in etcd)
// and the time until another member acknowledges a deposit to it is
// taken, with a check that no acknowledged deposit was lost. --rebuild
// measures how fast a member whose directory was wiped gets every shard
// back from the leaders while they serve (see `rebuild` below).
//
// The nodes run in this process (an actor system and a journal each) and
// talk through CAF's middleman over 127.0.0.1, with TLS unless --no-tls
// (certificates made with the openssl command line).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <iostream>
#include <map>
#include <random>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "../examples/bank/account.hpp"
#include "../tests/support/etcd_process.hpp"
#include "../tests/support/free_ports.hpp"
#include "mnemo/actors/aggregate_registry.hpp"
#include "mnemo/actors/remote_aggregate.hpp"
#include "mnemo/persistence/replica_log.hpp"
#include "mnemo/runtime/cluster.hpp"
#include "mnemo/runtime/coordination/shard_coordinator.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/node.hpp"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using steady = std::chrono::steady_clock;

namespace {

struct options {
  bool quick = false;
  double seconds = 5;
  size_t in_flight = 1000;
  bool tls = true;
  fs::path dir = fs::temp_directory_path();
  std::string durability = "sync";
  size_t replicas = 0;  // 0: the two-node bench
  size_t rounds = 2;
  size_t kills = 0;
  bool rebuild = false;
  size_t lease_ttl_s = 2;
  // CAF's scheduler policy of every member: "sharing", as the bank and
  // orders nodes run, or CAF's default "stealing".
  std::string scheduler = "sharing";
};

[[noreturn]] void die(const std::string& what) {
  std::cerr << "cluster_bench: " << what << "\n";
  std::exit(1);
}

std::string make_certificates(const fs::path& dir) {
  fs::create_directories(dir);
  std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  std::string script =
      "cd " + dir.string() + " && openssl req -x509" + ec +
      " -keyout ca.key -out ca.pem -days 30 -subj /CN=bench-ca && for n in "
      "n1 n2 n3; do openssl req" +
      ec +
      " -keyout $n.key -out $n.csr -subj /CN=$n && openssl x509 -req -in "
      "$n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $n.pem -days 30;"
      " done >/dev/null 2>&1";
  if (std::system(script.c_str()) != 0) die("openssl failed");
  return dir.string();
}

struct member {
  std::unique_ptr<mnemo::runtime::node_config> cfg;
  std::unique_ptr<mnemo::runtime::node> node;
  caf::actor accounts;
};

// With `etcd` (host:port), a member of a replicated cluster.
member start(const options& opt, const std::string& id,
             const std::string& members, const fs::path& data,
             const std::string& certs, const std::string& etcd = {},
             const std::string& prefix = {}) {
  member m;
  m.cfg = std::make_unique<mnemo::runtime::node_config>();
  auto& cfg = *m.cfg;
  cfg.data_dir = data.string();
  cfg.durability = opt.durability;
  cfg.cluster.node_id = id;
  cfg.cluster_members = members;
  cfg.cluster.secret = "cluster-bench-secret-0123456789";
  cfg.cluster_events = [](const std::string& what, const std::string& d) {
    if (what != "joined" && what != "member_joined")
      std::cerr << "cluster: " << what << ": " << d << "\n";
  };
  cfg.set("scheduler.policy", opt.scheduler == "sharing"
                                  ? caf::atom("sharing")
                                  : caf::atom("stealing"));
  cfg.cluster.plain_tcp = !opt.tls;
  if (opt.tls) {
    cfg.cluster.tls_certificate = certs + "/" + id + ".pem";
    cfg.cluster.tls_key = certs + "/" + id + ".key";
    cfg.cluster.tls_ca = certs + "/ca.pem";
  }
  if (!etcd.empty()) {
    cfg.cluster_etcd = etcd;
    cfg.cluster_etcd_prefix = prefix;
    cfg.cluster_replicas = opt.replicas;
    cfg.cluster_lease_ttl_s = opt.lease_ttl_s;
    // Leadership goes back to each shard's preferred replica soon after the
    // start, so that every round measures the same balanced placement.
    cfg.cluster_rebalance_after_s = 1;
  }
  mnemo::runtime::add_error_category<bank::account_errc>(cfg);
  auto n = mnemo::runtime::node::start(cfg);
  if (!n) die(mnemo::runtime::describe(n.error()));
  m.node = std::move(*n);
  mnemo::actors::register_types<bank::account>(m.node->registry());
  auto local = mnemo::actors::spawn_aggregate_registry<bank::account>(*m.node);
  m.accounts = m.node->cluster()->route(
      bank::account::type_name, local,
      mnemo::actors::aggregate_protocol<bank::account>());
  m.node->track(m.accounts);
  if (auto err = m.node->start_replication())
    die("start_replication: " + mnemo::runtime::describe(err));
  return m;
}

// Keeps `in_flight` deposits going from `self` through `router` to the
// accounts in `ids` until `until`; records latencies.
struct driver_state {
  std::vector<double> latencies_ms;
  uint64_t done = 0;
  uint64_t failed = 0;
  std::string first_error;
};

void drive(caf::actor_system& sys, const caf::actor& router,
           const std::vector<std::string>& ids, size_t in_flight,
           steady::time_point until, driver_state& st) {
  // Pipelined: an event-based driver keeps the window full.
  auto done = std::make_shared<std::promise<void>>();
  auto finished = done->get_future();
  auto* state = &st;
  sys.spawn([=, &ids](caf::event_based_actor* a) {
    auto pending = std::make_shared<size_t>(0);
    auto counter = std::make_shared<size_t>(0);
    auto step = std::make_shared<std::function<void()>>();
    *step = [=, &ids] {
      while (*pending < in_flight && steady::now() < until) {
        ++*pending;
        auto t0 = steady::now();
        auto& id = ids[(*counter)++ % ids.size()];
        a->request(
             router, std::chrono::seconds{30},
             mnemo::runtime::route_atom::value, id,
             mnemo::actors::command_message<bank::account>(bank::deposit{1}))
            .then(
                [=](bank::account_reply&) {
                  --*pending;
                  ++state->done;
                  state->latencies_ms.push_back(
                      std::chrono::duration<double, std::milli>(steady::now() -
                                                                t0)
                          .count());
                  (*step)();
                },
                [=](caf::error& err) {
                  --*pending;
                  ++state->failed;
                  if (state->first_error.empty())
                    state->first_error = mnemo::runtime::describe(err);
                  (*step)();
                });
      }
      if (*pending == 0 && steady::now() >= until) {
        done->set_value();
        *step = nullptr;  // breaks the cycle
        a->quit();
      }
    };
    (*step)();
  });
  finished.wait();
}


// -- three members: replicated against static -------------------------------

double percentile(std::vector<double>& xs, double q) {
  if (xs.empty()) return 0.0;
  std::sort(xs.begin(), xs.end());
  return std::round(xs[static_cast<size_t>(q * (xs.size() - 1))] * 100) / 100;
}

struct trio {
  std::string members;
  std::vector<fs::path> dirs;
  std::string etcd, prefix;
  std::vector<member> m;
};

// Waits until the three members are joined and, replicated, every shard
// is led by a member that knows it leads it.
void settle(trio& t) {
  auto deadline = steady::now() + std::chrono::seconds{30};
  for (;;) {
    bool ok = true;
    for (auto& x : t.m) ok = ok && x.node && x.node->cluster()->connected().size() == 2;
    if (ok && !t.etcd.empty()) {
      // Every member names the same leader, that one leads, and it is the
      // shard's preferred replica (the first by rendezvous hash).
      auto& view = t.m[0].node->cluster()->view();
      for (uint32_t s = 0; ok && s < view.shards(); ++s) {
        auto l = t.m[0].node->cluster()->leader_of(s);
        ok = !l.empty() && l == view.replicas_of(s, 3).front();
        for (auto& x : t.m) ok = ok && x.node->cluster()->leader_of(s) == l;
      }
    }
    if (ok) return;
    if (steady::now() > deadline) die("the members did not settle in 30 s");
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
}

trio start_trio(const options& opt, const fs::path& dir,
                const std::string& certs, const std::string& etcd,
                const std::string& prefix) {
  trio t;
  fs::create_directories(dir);
  t.etcd = etcd;
  t.prefix = prefix;
  auto port = mnemo::test::free_port_block(3);
  for (int i = 0; i < 3; ++i) {
    t.members += (i ? "," : "") + std::string{"n"} + std::to_string(i + 1) +
                 "@127.0.0.1:" + std::to_string(port + i);
    t.dirs.push_back(dir / ("n" + std::to_string(i + 1)));
  }
  for (int i = 0; i < 3; ++i)
    t.m.push_back(start(opt, "n" + std::to_string(i + 1), t.members,
                        t.dirs[static_cast<size_t>(i)], certs, etcd, prefix));
  settle(t);
  return t;
}

void restart(const options& opt, trio& t, size_t i, const std::string& certs) {
  t.m[i] = start(opt, "n" + std::to_string(i + 1), t.members, t.dirs[i], certs,
                 t.etcd, t.prefix);
  settle(t);
}

// Sends one command through `router` and waits for its reply.
template <class Cmd>
caf::expected<bank::account_reply> call(member& via, const std::string& id,
                                        Cmd cmd, std::string command_id = {}) {
  caf::scoped_actor self{via.node->system()};
  caf::expected<bank::account_reply> result{caf::error{}};
  self->request(via.accounts, std::chrono::seconds{30},
                mnemo::runtime::route_atom::value, id,
                mnemo::actors::command_message<bank::account>(
                    std::move(cmd), std::move(command_id)))
      .receive([&](bank::account_reply& r) { result = r; },
               [&](caf::error& err) { result = std::move(err); });
  return result;
}

// Opens `ids` through n1, retrying while a shard has no leader.
void open_accounts(trio& t, const std::vector<std::string>& ids) {
  for (auto& id : ids) {
    auto deadline = steady::now() + std::chrono::seconds{30};
    for (;;) {
      auto r = call(t.m[0], id, bank::open_account{"bench"}, "open");
      if (r) break;
      if (steady::now() > deadline)
        die("open " + id + ": " + mnemo::runtime::describe(r.error()));
      std::this_thread::sleep_for(std::chrono::milliseconds{20});
    }
  }
}

struct slice {
  uint64_t commands = 0;
  uint64_t failed = 0;
  double seconds = 0;
  std::vector<double> latencies;
  std::string first_error;
  // Replicated: how many shards each member led when the slice began.
  std::string leaders;
};

slice run_slice(const options& opt, const fs::path& dir,
                const std::string& certs, const std::string& etcd,
                const std::string& prefix,
                const std::vector<std::string>& ids) {
  auto t = start_trio(opt, dir, certs, etcd, prefix);
  open_accounts(t, ids);
  std::string leaders;
  if (!etcd.empty()) {
    std::map<std::string, size_t> led;
    auto shards = t.m[0].node->cluster()->view().shards();
    for (uint32_t s = 0; s < shards; ++s)
      ++led[t.m[0].node->cluster()->leader_of(s)];
    for (auto& [member, n] : led)
      leaders += (leaders.empty() ? "" : " ") + member + ":" + std::to_string(n);
  }
  driver_state st;
  auto t0 = steady::now();
  drive(t.m[0].node->system(), t.m[0].accounts, ids, opt.in_flight,
        t0 + std::chrono::duration_cast<steady::duration>(
                 std::chrono::duration<double>(opt.seconds)),
        st);
  slice result;
  result.seconds = std::chrono::duration<double>(steady::now() - t0).count();
  result.commands = st.done;
  result.failed = st.failed;
  result.latencies = std::move(st.latencies_ms);
  result.first_error = st.first_error;
  result.leaders = leaders;
  return result;
}

json replicated_commands(const options& opt, const fs::path& base,
                         const std::string& certs,
                         mnemo::test::etcd_process& etcd) {
  std::vector<std::string> ids;
  for (int i = 0; i < 1000; ++i) ids.push_back("acc-" + std::to_string(i));
  slice rep, unrep;
  auto add = [](slice& into, slice&& s) {
    into.commands += s.commands;
    into.failed += s.failed;
    into.seconds += s.seconds;
    into.latencies.insert(into.latencies.end(), s.latencies.begin(),
                          s.latencies.end());
    if (into.first_error.empty()) into.first_error = s.first_error;
  };
  std::vector<double> ratios;
  for (size_t r = 0; r < opt.rounds; ++r) {
    auto round = "r" + std::to_string(r);
    auto u = run_slice(opt, base / (round + "-static"), certs, "", "", ids);
    auto v = run_slice(opt, base / (round + "-replicated"), certs,
                       etcd.endpoint(), "/bench/" + round, ids);
    auto u_rate = u.commands / u.seconds, v_rate = v.commands / v.seconds;
    std::cerr << "round " << r << ": unreplicated " << std::llround(u_rate)
              << "/s, replicated " << std::llround(v_rate)
              << "/s (shards led: " << v.leaders << ")\n";
    ratios.push_back(u_rate > 0 ? v_rate / u_rate : 0);
    add(unrep, std::move(u));
    add(rep, std::move(v));
  }
  auto rate = [](const slice& s) {
    return s.seconds > 0 ? static_cast<double>(s.commands) / s.seconds : 0.0;
  };
  json out{{"bench", "cluster.commands"},
           {"nodes", 3},
           {"replicas", opt.replicas},
           {"acks", "quorum"},
           {"durability", opt.durability},
           {"tls", opt.tls},
           {"in_flight", opt.in_flight},
           {"rounds", opt.rounds},
           {"seconds_per_slice", opt.seconds},
           {"commands_per_s", std::llround(rate(rep))},
           {"p50_ms", percentile(rep.latencies, 0.5)},
           {"p99_ms", percentile(rep.latencies, 0.99)},
           {"unreplicated_commands_per_s", std::llround(rate(unrep))},
           {"unreplicated_p50_ms", percentile(unrep.latencies, 0.5)},
           {"unreplicated_p99_ms", percentile(unrep.latencies, 0.99)},
           {"ratio", rate(unrep) > 0
                         ? std::round(100 * rate(rep) / rate(unrep)) / 100
                         : 0.0},
           {"ratio_per_round", ratios},
           {"failed", rep.failed + unrep.failed}};
  if (!rep.first_error.empty()) out["first_error"] = rep.first_error;
  if (!unrep.first_error.empty())
    out["unreplicated_first_error"] = unrep.first_error;
  return out;
}

json failover(const options& opt, const fs::path& base,
              const std::string& certs, mnemo::test::etcd_process& etcd) {
  auto t = start_trio(opt, base / "failover", certs, etcd.endpoint(),
                      "/bench/failover");
  // One account per shard.
  auto shards = t.m[0].node->cluster()->view().shards();
  std::vector<std::string> ids(shards);
  for (int i = 0, found = 0; found < static_cast<int>(shards); ++i) {
    auto id = "f-" + std::to_string(i);
    auto s = mnemo::runtime::entity_shard(bank::account::type_name, id, shards);
    if (ids[s].empty()) {
      ids[s] = id;
      ++found;
    }
  }
  open_accounts(t, ids);
  std::map<std::string, int64_t> balance;
  std::mt19937 rng{static_cast<unsigned>(::getpid())};
  std::vector<double> ms;
  uint64_t lost = 0, deposits = 0;
  for (size_t k = 0; k < opt.kills; ++k) {
    auto& id = ids[rng() % ids.size()];
    auto shard = mnemo::runtime::entity_shard(bank::account::type_name, id, shards);
    auto leader = t.m[0].node->cluster()->leader_of(shard);
    auto victim = static_cast<size_t>(leader[1] - '1');
    auto& via = t.m[(victim + 1 + rng() % 2) % 3];
    for (int d = 0; d < 3; ++d) {
      auto r = call(via, id, bank::deposit{1},
                    "k" + std::to_string(k) + "-" + std::to_string(d));
      if (!r) die("deposit before the kill: " + mnemo::runtime::describe(r.error()));
      balance[id] = r->balance;
      ++deposits;
    }
    auto t0 = steady::now();
    t.m[victim].node->coordinator()->abandon();
    // In this order: the node refers to its config.
    t.m[victim].accounts = nullptr;
    t.m[victim].node.reset();
    t.m[victim].cfg.reset();
    caf::expected<bank::account_reply> r{caf::error{}};
    while (steady::now() - t0 < std::chrono::seconds{30}) {
      r = call(via, id, bank::deposit{1}, "k" + std::to_string(k) + "-after");
      if (r) break;
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
    if (!r) die("no failover within 30 s: " + mnemo::runtime::describe(r.error()));
    ms.push_back(
        std::chrono::duration<double, std::milli>(steady::now() - t0).count());
    ++deposits;
    if (r->balance != balance[id] + 1) ++lost;
    balance[id] = r->balance;
    std::cerr << "kill " << k << ": n" << victim + 1 << " led shard " << shard
              << ", served again after " << std::llround(ms.back()) << " ms\n";
    restart(opt, t, victim, certs);
  }
  auto sorted = ms;
  return json{{"bench", "cluster.failover"},
              {"nodes", 3},
              {"replicas", opt.replicas},
              {"lease_ttl_s", opt.lease_ttl_s},
              {"durability", opt.durability},
              {"tls", opt.tls},
              {"kills", opt.kills},
              {"p50_ms", std::llround(percentile(sorted, 0.5))},
              {"max_ms", sorted.empty() ? 0 : std::llround(sorted.back())},
              {"acknowledged_deposits", deposits},
              {"lost_acknowledged", lost}};
}

// --rebuild: the records a wiped member must fetch, and the baseline: the
// rate at which the cluster wrote them. Loads for `opt.seconds`, wipes
// n3's directory (its coordinator abandoned, as in a kill) and starts it
// again empty: every shard it holds becomes a learner and is synced from
// its leader from position 1, while n1 keeps driving the same load for
// `opt.seconds` (after n3's shards failed over, so that failures counted
// are the rebuild's: the handovers back to n3 once it caught up, its
// shards' preferred replica). The time taken is until n3 votes again in
// every shard
// (caught up with a leader's commit point); then, once the load stopped,
// every shard's log must be identical on the three members.
json rebuild(const options& opt, const fs::path& base,
             const std::string& certs, mnemo::test::etcd_process& etcd) {
  namespace pe = mnemo::persistence;
  auto t = start_trio(opt, base / "rebuild", certs, etcd.endpoint(),
                      "/bench/rebuild");
  std::vector<std::string> ids;
  for (int i = 0; i < 1000; ++i) ids.push_back("acc-" + std::to_string(i));
  open_accounts(t, ids);
  auto until = [&](steady::time_point from) {
    return from + std::chrono::duration_cast<steady::duration>(
                      std::chrono::duration<double>(opt.seconds));
  };
  driver_state load;
  auto t0 = steady::now();
  drive(t.m[0].node->system(), t.m[0].accounts, ids, opt.in_flight,
        until(t0), load);
  auto load_rate =
      load.done / std::chrono::duration<double>(steady::now() - t0).count();
  auto shards = t.m[0].node->cluster()->view().shards();
  // The wipe.
  t.m[2].node->coordinator()->abandon();
  t.m[2].accounts = nullptr;
  t.m[2].node.reset();
  t.m[2].cfg.reset();
  fs::remove_all(t.dirs[2]);
  // The failover first (n3 led a third of the shards): what follows
  // measures the rebuild, not the lease running out.
  auto deadline = steady::now() + std::chrono::seconds{30};
  for (uint32_t s = 0; s < shards;) {
    auto l = t.m[0].node->cluster()->leader_of(s);
    if (!l.empty() && l != "n3" && l == t.m[1].node->cluster()->leader_of(s)) {
      ++s;
      continue;
    }
    if (steady::now() > deadline) die("no failover of n3's shards in 30 s");
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
  auto t1 = steady::now();
  t.m[2] = start(opt, "n3", t.members, t.dirs[2], certs, t.etcd, t.prefix);
  driver_state during;
  auto load_end = until(steady::now());
  std::thread loader{[&] {
    drive(t.m[0].node->system(), t.m[0].accounts, ids, opt.in_flight,
          load_end, during);
  }};
  auto learners = [&] {
    size_t n = 0;
    for (uint32_t s = 0; s < shards; ++s) {
      auto l = pe::replica_log{t.m[2].node->journal(), s}.learner();
      if (!l) die("learner(): " + l.error().to_string());
      n += l->has_value();
    }
    return n;
  };
  // First the coordinator marks the wiped copy's shards, then they catch up.
  deadline = steady::now() + std::chrono::seconds{30};
  while (learners() == 0) {
    if (steady::now() > deadline) die("the wiped member never became a learner");
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
  size_t marked = learners();
  deadline = steady::now() + std::chrono::seconds{600};
  while (learners() > 0) {
    if (steady::now() > deadline) die("the wiped member did not catch up in 600 s");
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
  auto rebuilt_s = std::chrono::duration<double>(steady::now() - t1).count();
  uint64_t records = 0;
  for (uint32_t s = 0; s < shards; ++s)
    records += pe::replica_log{t.m[2].node->journal(), s}.end_position().value();
  loader.join();
  auto during_s = opt.seconds;
  // Quiet now: every shard's log the same everywhere.
  bool identical = false;
  deadline = steady::now() + std::chrono::seconds{60};
  while (!identical && steady::now() < deadline) {
    identical = true;
    for (uint32_t s = 0; identical && s < shards; ++s) {
      auto d0 = pe::replica_log{t.m[0].node->journal(), s}.digest();
      for (size_t i = 1; identical && i < 3; ++i) {
        auto d = pe::replica_log{t.m[i].node->journal(), s}.digest();
        identical = d0 && d && *d0 == *d;
      }
    }
    if (!identical) std::this_thread::sleep_for(std::chrono::milliseconds{100});
  }
  std::cerr << "rebuild: " << marked << " learner shards, " << records
            << " records in " << rebuilt_s << " s\n";
  json out{{"bench", "cluster.rebuild"},
           {"nodes", 3},
           {"replicas", opt.replicas},
           {"durability", opt.durability},
           {"tls", opt.tls},
           {"learner_shards", marked},
           {"records", records},
           {"seconds", std::round(rebuilt_s * 100) / 100},
           {"records_per_s", std::llround(records / rebuilt_s)},
           {"load_commands_per_s", std::llround(load_rate)},
           {"ratio", load_rate > 0
                         ? std::round(100 * records / rebuilt_s / load_rate) /
                               100
                         : 0.0},
           {"served_during_rebuild_commands_per_s",
            std::llround(during.done / during_s)},
           {"failed_during_rebuild", during.failed},
           {"identical_logs", identical}};
  if (!during.first_error.empty()) out["first_error"] = during.first_error;
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) die(a + " needs a value");
      return std::string{argv[++i]};
    };
    if (a == "--quick")
      opt.quick = true;
    else if (a == "--seconds")
      opt.seconds = std::stod(value());
    else if (a == "--in-flight")
      opt.in_flight = std::stoul(value());
    else if (a == "--no-tls")
      opt.tls = false;
    else if (a == "--dir")
      opt.dir = value();
    else if (a == "--durability")
      opt.durability = value();
    else if (a == "--replicas")
      opt.replicas = std::stoul(value());
    else if (a == "--rounds")
      opt.rounds = std::stoul(value());
    else if (a == "--kills")
      opt.kills = std::stoul(value());
    else if (a == "--rebuild")
      opt.rebuild = true;
    else if (a == "--lease-ttl-s")
      opt.lease_ttl_s = std::stoul(value());
    else if (a == "--scheduler")
      opt.scheduler = value();
    else
      die("unknown option " + a +
          " (--quick, --seconds S, --in-flight N, --no-tls, --dir PATH, "
          "--durability MODE, --replicas R, --rounds K, --kills N, "
          "--rebuild, --lease-ttl-s T, --scheduler sharing|stealing)");
  }
  if (opt.quick) opt.seconds = 1;
  if (opt.replicas > 3) die("--replicas: at most 3 (three members)");
  if (opt.scheduler != "sharing" && opt.scheduler != "stealing")
    die("--scheduler: sharing or stealing");
  auto base = opt.dir / ("mnemo-cluster-bench-" + std::to_string(::getpid()));
  fs::remove_all(base);
  fs::create_directories(base);
  auto certs = opt.tls ? make_certificates(base / "certs") : std::string{};
  if (opt.replicas > 0) {
    int rc = 0;
    try {
      mnemo::test::etcd_process etcd{base};
      if (opt.rounds > 0) {  // --rounds 0: failover only
        auto line = replicated_commands(opt, base, certs, etcd);
        line["allocator"] = MNEMO_ALLOCATOR;
        line["scheduler"] = opt.scheduler;
        std::cout << line.dump() << std::endl;
        if (line["commands_per_s"].get<int64_t>() == 0) rc = 1;
      }
      if (opt.kills > 0) {
        auto f = failover(opt, base, certs, etcd);
        f["scheduler"] = opt.scheduler;
        std::cout << f.dump() << std::endl;
        if (f["lost_acknowledged"].get<uint64_t>() != 0) rc = 1;
      }
      if (opt.rebuild) {
        auto r = rebuild(opt, base, certs, etcd);
        r["scheduler"] = opt.scheduler;
        std::cout << r.dump() << std::endl;
        if (!r["identical_logs"].get<bool>() ||
            r["records"].get<uint64_t>() == 0)
          rc = 1;
      }
    } catch (const std::exception& e) {
      die(e.what());
    }
    fs::remove_all(base);
    return rc;
  }
  auto port = 24000 + (::getpid() % 1000) * 2;
  auto members = "n1@127.0.0.1:" + std::to_string(port) +
                 ",n2@127.0.0.1:" + std::to_string(port + 1);
  driver_state st;
  json out;
  {
    auto a = start(opt, "n1", members, base / "a", certs);
    auto b = start(opt, "n2", members, base / "b", certs);
    auto deadline = steady::now() + std::chrono::seconds{15};
    while (a.node->cluster()->connected().empty() ||
           b.node->cluster()->connected().empty()) {
      if (steady::now() > deadline) die("the nodes did not join");
      std::this_thread::sleep_for(std::chrono::milliseconds{20});
    }
    // Accounts that B owns, opened through A.
    std::vector<std::string> ids;
    auto& view = a.node->cluster()->view();
    for (int i = 0; ids.size() < 1000; ++i) {
      auto id = "acc-" + std::to_string(i);
      if (view.owner(bank::account::type_name, id) == "n2") ids.push_back(id);
    }
    {
      caf::scoped_actor self{a.node->system()};
      for (auto& id : ids)
        self->request(a.accounts, std::chrono::seconds{30},
                      mnemo::runtime::route_atom::value, id,
                      mnemo::actors::command_message<bank::account>(
                          bank::open_account{"bench"}))
            .receive([](bank::account_reply&) {},
                     [&](caf::error& err) {
                       die("open: " + mnemo::runtime::describe(err));
                     });
    }
    auto t0 = steady::now();
    drive(a.node->system(), a.accounts, ids, opt.in_flight,
          t0 + std::chrono::duration_cast<steady::duration>(
                   std::chrono::duration<double>(opt.seconds)),
          st);
    auto secs = std::chrono::duration<double>(steady::now() - t0).count();
    auto& lat = st.latencies_ms;
    std::sort(lat.begin(), lat.end());
    auto pct = [&](double q) {
      return lat.empty()
                 ? 0.0
                 : std::round(lat[static_cast<size_t>(q * (lat.size() - 1))] *
                              100) /
                       100;
    };
    auto stats = b.node->journal().stats();
    out = json{
        {"bench", "cluster.commands"},
        {"nodes", 2},
        {"in_flight", opt.in_flight},
        {"remote_fraction", 1.0},
        {"durability", opt.durability},
        {"tls", opt.tls},
        {"commands", st.done},
        {"failed", st.failed},
        {"commands_per_s", std::llround(st.done / secs)},
        {"p50_ms", pct(0.5)},
        {"p99_ms", pct(0.99)},
        {"owner_commits", stats.commits},
        {"owner_events_per_commit",
         stats.commits ? std::round(10.0 * stats.events / stats.commits) / 10
                       : 0.0}};
    if (!st.first_error.empty()) out["first_error"] = st.first_error;
    caf::anon_send_exit(a.accounts, caf::exit_reason::user_shutdown);
  }
  fs::remove_all(base);
  out["allocator"] = MNEMO_ALLOCATOR;
  out["scheduler"] = opt.scheduler;
  std::cout << out.dump() << std::endl;
  return st.done > 0 ? 0 : 1;
}
