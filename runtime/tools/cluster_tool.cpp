// mnemo-cluster: moves streams between members when a cluster's member list
// changes (docs/cluster.md, "Changing the members"), on stopped nodes: it
// opens each data directory for writing, which a running node holds. And,
// in a replicated cluster, shows and changes a shard's replica set in etcd
// while the nodes run (docs/coordination.md). Prints JSON lines.

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/stream_export.hpp"
#include "mnemo/runtime/cluster_view.hpp"
#include "mnemo/runtime/coordination/replica_sets.hpp"
#include "mnemo/runtime/error.hpp"

namespace {

namespace mp = mnemo::persistence;
namespace mr = mnemo::runtime;
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

constexpr int exit_error = 1;
constexpr int exit_usage = 2;

constexpr const char* usage_text = R"(usage:
  mnemo-cluster plan    --data DIR --node-id ID --members LIST --shards N
                        --route PREFIX=TYPE [--route PREFIX=TYPE ...]
  mnemo-cluster export  (the options of plan) --out DIR
  mnemo-cluster import  --data DIR --node-id ID FILE...
  mnemo-cluster release --data DIR --node-id ID FILE...

Moves the streams whose owner changes when the member list becomes LIST
("id@host:port,..." as given to --cluster.members; the shard count stays).
A stream "PREFIX<id>" belongs to entity <id> of routed type TYPE, e.g.
--route account-=account --route saga-transfer-=saga.transfer; streams of
no route stay where they are.

  plan     lists the streams of node ID that LIST places on other members
  export   writes them to DIR/<ID>-to-<member>.mnemo-streams, one file per
           new owner
  import   (on the new owner) adds the streams of the files addressed to ID;
           repeating it changes nothing
  release  (on node ID, after the imports) deletes the exported streams and
           marks them moved, refusing any that changed since the export

Every node must be stopped: the tool opens the data directory for writing.
Start the nodes with the new member list afterwards; read models of nodes
that released streams rebuild once at start.

  mnemo-cluster replicas ACTION --etcd HOST:PORT[,...] [--prefix P]
                         --shard N [--member ID]
  mnemo-cluster replicas replace --etcd HOST:PORT[,...] [--prefix P]
                         --old ID --new ID [--shard N] [--parallel K]
                         [--timeout SECONDS]
  mnemo-cluster replicas decommission --etcd HOST:PORT[,...] [--prefix P]
                         --member ID [--parallel K] [--timeout SECONDS]
  mnemo-cluster replicas forget --etcd HOST:PORT[,...] [--prefix P]
                         --member ID

A replicated cluster's shard (--cluster.etcd; P is its --cluster.etcd-prefix,
default /mnemo/cluster), while the nodes run. ACTION:
  status     prints the shard's voters, observers, ready observers, whether
             the voters are established, and its leader
  observe    ID becomes an observer: it catches up without counting
  unobserve  ID observes no longer
  promote    observer ID becomes a voter, once a leader reported it ready
             and the current voters are established
  remove     voter ID leaves the voters, once they are established
  abort      the voters go back to the set before the last change
Replacing c by d: observe d, wait until status shows d ready, promote d,
wait until established, remove c. Each change is one etcd transaction; a
lost race prints the set as it is now (exit 1). promote, remove and abort
are refused while a member in P/members/ records no protocol of 2 (a build
before 2026-12-07, which does not read the voters keys).
  replace    does that for every shard of member OLD (or shard N only),
             with NEW (a member that started once: it has a replica id in
             etcd), at most K shards (default 4) catching up at a time.
             Prints a line per step and a summary; exit 1 if shards are
             left after the timeout (default 600 s). Run again to resume.
             A shard where NEW votes already beside OLD and the set did
             not grow by its last change is refused (exit 1): removing OLD
             would shrink it (another replacement got there first).
  decommission  the same for every shard of member ID, each to a running
             member (P/members/<id>/live) without a copy of it, the one
             with the fewest copies first; refused if some shard would be
             left with fewer replicas (start another member first).
  forget     takes stopped member ID, a replica of no shard, out of the
             member directory: the others stop connecting to it (started
             again, it rejoins).
)";

struct options {
  std::string command;
  std::string data;
  std::string node_id;
  std::string members;
  size_t shards = 0;
  std::vector<std::pair<std::string, std::string>> routes;  // prefix, type
  std::string out;
  std::vector<std::string> files;
  // replicas
  std::string etcd;
  std::string prefix = "/mnemo/cluster";
  std::optional<uint32_t> shard;
  std::string member;
  // replicas replace
  std::string old_member;
  std::string new_member;
  size_t parallel = 4;
  size_t timeout_s = 600;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "mnemo-cluster: " << why << "\n\n" << usage_text;
  std::exit(exit_usage);
}

void print(const json& line) {
  std::cout << line.dump() << '\n';
}

int fail(const std::string& what) {
  print(json{{"error", what}});
  return exit_error;
}

// A decimal number, or nothing.
std::optional<unsigned long> number(const std::string& text) {
  char* end = nullptr;
  auto n = std::strtoul(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0') return std::nullopt;
  return n;
}

options parse(int argc, char** argv) {
  if (argc < 2) usage("no command");
  options o;
  o.command = argv[1];
  if (o.command == "--help" || o.command == "-h") {
    std::cout << usage_text;
    std::exit(0);
  }
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--data") {
      o.data = value();
    } else if (arg == "--node-id") {
      o.node_id = value();
    } else if (arg == "--members") {
      o.members = value();
    } else if (arg == "--shards") {
      auto n = number(value());
      if (!n || *n == 0) usage("--shards needs a positive number");
      o.shards = *n;
    } else if (arg == "--route") {
      auto text = value();
      auto eq = text.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
        usage("--route needs PREFIX=TYPE, got '" + text + "'");
      o.routes.emplace_back(text.substr(0, eq), text.substr(eq + 1));
    } else if (arg == "--out") {
      o.out = value();
    } else if (arg == "--etcd") {
      o.etcd = value();
    } else if (arg == "--prefix") {
      o.prefix = value();
    } else if (arg == "--shard") {
      auto n = number(value());
      if (!n || *n > UINT32_MAX) usage("--shard needs a shard number");
      o.shard = static_cast<uint32_t>(*n);
    } else if (arg == "--member") {
      o.member = value();
    } else if (arg == "--old") {
      o.old_member = value();
    } else if (arg == "--new") {
      o.new_member = value();
    } else if (arg == "--parallel") {
      auto n = number(value());
      if (!n || *n == 0 || *n > 65536)
        usage("--parallel needs a number from 1 to 65536");
      o.parallel = *n;
    } else if (arg == "--timeout") {
      auto n = number(value());
      if (!n || *n == 0 || *n > 86400 * 7)
        usage("--timeout needs a number of seconds (1 to 604800)");
      o.timeout_s = *n;
    } else if (!arg.empty() && arg[0] == '-') {
      usage("unknown option " + arg);
    } else {
      o.files.push_back(arg);
    }
  }
  if (o.command == "replicas") {
    if (o.files.size() != 1) usage("replicas needs one action");
    auto& action = o.files[0];
    bool needs_member = action == "observe" || action == "unobserve" ||
                        action == "promote" || action == "remove";
    if (action == "replace") {
      if (o.etcd.empty() || o.old_member.empty() || o.new_member.empty())
        usage("replicas replace needs --etcd, --old and --new");
      return o;
    }
    if (action == "decommission" || action == "forget") {
      if (o.etcd.empty() || o.member.empty())
        usage("replicas " + action + " needs --etcd and --member");
      return o;
    }
    if (!needs_member && action != "status" && action != "abort")
      usage("unknown replicas action '" + action + "'");
    if (o.etcd.empty() || !o.shard) usage("replicas needs --etcd and --shard");
    if (needs_member && o.member.empty())
      usage("replicas " + action + " needs --member");
    return o;
  }
  if (o.data.empty()) usage("--data is required");
  if (o.node_id.empty()) usage("--node-id is required");
  bool planning = o.command == "plan" || o.command == "export";
  if (planning) {
    if (o.members.empty() || o.shards == 0 || o.routes.empty())
      usage(o.command + " needs --members, --shards and --route");
    if (o.command == "export" && o.out.empty()) usage("export needs --out");
    if (!o.files.empty()) usage("unexpected argument " + o.files[0]);
  } else if (o.command == "import" || o.command == "release") {
    if (o.files.empty()) usage(o.command + " needs bundle files");
  } else {
    usage("unknown command '" + o.command + "'");
  }
  return o;
}

std::unique_ptr<mp::journal> open(const std::string& dir, bool read_only,
                                  std::string& why) {
  mp::journal_config cfg;
  cfg.directory = dir;
  cfg.read_only = read_only;
  auto j = mp::journal::open(cfg);
  if (j) return std::move(j).value();
  why = j.error().to_string();
  if (j.error().code() == mp::errc::directory_in_use)
    why += " (stop the node first)";
  return nullptr;
}

// A stream that changes owner.
struct move {
  std::string stream;
  std::string type;
  std::string id;
  std::string to;
  uint64_t events = 0;
};

int plan_moves(const options& o, mp::journal& j, std::vector<move>& moves,
               size_t& staying, size_t& unrouted,
               std::optional<mr::cluster_view>& view) {
  std::vector<mr::cluster_member> members;
  std::string why;
  std::stringstream list{o.members};
  for (std::string item; std::getline(list, item, ',');) {
    auto m = mr::parse_member(item, why);
    if (!m) return fail("--members: " + why);
    members.push_back(*m);
  }
  view = mr::cluster_view::make(members, static_cast<uint32_t>(o.shards), why);
  if (!view) return fail("--members: " + why);
  std::string after;
  for (;;) {
    auto heads = j.list_streams(after, 1000);
    if (!heads) return fail(heads.error().to_string());
    if (heads->empty()) break;
    after = heads->back().stream_id;
    for (auto& h : *heads) {
      const std::pair<std::string, std::string>* route = nullptr;
      for (auto& r : o.routes)
        if (h.stream_id.compare(0, r.first.size(), r.first) == 0 &&
            (!route || r.first.size() > route->first.size()))
          route = &r;  // the longest matching prefix
      if (!route) {
        ++unrouted;
        continue;
      }
      auto moved = j.moved_to(h.stream_id);
      if (!moved) return fail(moved.error().to_string());
      if (*moved) continue;  // released before: nothing of it is here
      auto id = h.stream_id.substr(route->first.size());
      auto& owner = view->owner(route->second, id);
      if (owner == o.node_id) {
        ++staying;
        continue;
      }
      moves.push_back({h.stream_id, route->second, id, owner,
                       h.highest_sequence - h.deleted_to});
    }
  }
  return 0;
}

int plan_or_export(const options& o) {
  std::vector<move> moves;
  size_t staying = 0;
  size_t unrouted = 0;
  std::optional<mr::cluster_view> view;
  // Export holds the directory for writing throughout: no node can run.
  std::string why;
  auto j = open(o.data, o.command == "plan", why);
  if (!j) return fail(why);
  if (auto rc = plan_moves(o, *j, moves, staying, unrouted, view)) return rc;
  std::map<std::string, std::vector<const move*>> by_owner;
  for (auto& m : moves) by_owner[m.to].push_back(&m);
  if (o.command == "plan") {
    for (auto& m : moves)
      print(json{{"stream", m.stream}, {"type", m.type}, {"id", m.id},
                 {"from", o.node_id}, {"to", m.to}, {"events", m.events}});
  } else {
    std::error_code ec;
    fs::create_directories(o.out, ec);
    if (ec) return fail("cannot create '" + o.out + "': " + ec.message());
    for (auto& [owner, list] : by_owner) {
      mp::stream_bundle bundle;
      bundle.labels = {{"from", o.node_id},
                       {"to", owner},
                       {"members", view->fingerprint()}};
      uint64_t events = 0;
      for (auto* m : list) {
        auto ex = j->export_stream(m->stream);
        if (!ex) return fail(ex.error().to_string());
        events += ex->events.size();
        bundle.streams.push_back(std::move(*ex));
      }
      auto path = (fs::path{o.out} / (o.node_id + "-to-" + owner +
                                      ".mnemo-streams"))
                      .string();
      auto bytes = mp::encode_bundle(bundle);
      {
        std::ofstream file{path + ".part", std::ios::binary | std::ios::trunc};
        file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        file.flush();
        if (!file) return fail("cannot write '" + path + ".part'");
      }
      fs::rename(path + ".part", path, ec);
      if (ec) return fail("cannot rename to '" + path + "': " + ec.message());
      print(json{{"file", path},
                 {"to", owner},
                 {"streams", list.size()},
                 {"events", events},
                 {"bytes", bytes.size()}});
    }
  }
  json summary{{"from", o.node_id},
               {"moving", moves.size()},
               {"staying", staying},
               {"unrouted", unrouted}};
  json to = json::object();
  for (auto& [owner, list] : by_owner) to[owner] = list.size();
  summary["to"] = to;
  print(summary);
  return 0;
}

int import_or_release(const options& o) {
  std::string why;
  auto j = open(o.data, false, why);
  if (!j) return fail(why);
  bool importing = o.command == "import";
  for (auto& path : o.files) {
    std::ifstream file{path, std::ios::binary};
    if (!file) return fail("cannot read '" + path + "'");
    std::string bytes{std::istreambuf_iterator<char>{file},
                      std::istreambuf_iterator<char>{}};
    auto bundle = mp::decode_bundle(bytes);
    if (!bundle) return fail("'" + path + "': " + bundle.error().to_string());
    auto& labels = bundle->labels;
    auto label = [&](const char* key) {
      auto i = labels.find(key);
      return i == labels.end() ? std::string{} : i->second;
    };
    auto addressed = label(importing ? "to" : "from");
    if (addressed != o.node_id)
      return fail("'" + path + "' is " + (importing ? "for" : "from") +
                  " member '" + addressed + "', not '" + o.node_id + "'");
    size_t done = 0;
    for (auto& s : bundle->streams) {
      auto& stream = s.head.stream_id;
      if (importing) {
        if (auto err = j->import_stream(s))
          return fail("'" + path + "': " + err.to_string());
      } else {
        auto head = j->head_of(stream);
        if (!head) return fail(head.error().to_string());
        auto moved = j->moved_to(stream);
        if (!moved) return fail(moved.error().to_string());
        if (!*moved && (head->highest_sequence != s.head.highest_sequence ||
                        head->deleted_to != s.head.deleted_to))
          return fail("stream '" + stream + "' changed since '" + path +
                      "' was exported (version " +
                      std::to_string(head->highest_sequence) + ", exported " +
                      std::to_string(s.head.highest_sequence) +
                      "); export again and import that");
        if (auto err = j->release_stream(stream, label("to")))
          return fail(err.to_string());
      }
      ++done;
    }
    print(json{{"file", path},
               {importing ? "imported" : "released", done},
               {importing ? "from" : "to", label(importing ? "from" : "to")}});
  }
  return 0;
}

json set_json(const mr::coordination::replica_set& s) {
  return json{{"shard", s.shard},
              {"voters", s.voters},
              {"previous", s.previous},
              {"observers", s.observers},
              {"ready", s.ready},
              {"established", s.established},
              {"leader", s.leader},
              {"epoch", s.epoch},
              {"revision", s.revision}};
}

// Prints `err` with its code; returns the exit code.
int fail_with(const caf::error& err) {
  std::string code = "error";
  for (auto c : {mr::errc::conflict, mr::errc::invalid_argument,
                 mr::errc::not_found, mr::errc::owner_unavailable})
    if (mr::is(err, c)) code = mr::to_string(c);
  print(json{{"error", mr::describe(err)}, {"code", code}});
  return exit_error;
}

const char* step_name(mnemo::runtime::coordination::replace_step::kind k) {
  using step = mnemo::runtime::coordination::replace_step;
  switch (k) {
    case step::done: return "done";
    case step::wait: return "wait";
    case step::observe_new: return "observe";
    case step::promote_new: return "promote";
    case step::remove_old: return "remove";
    case step::unobserve_old: return "unobserve";
    case step::refused: return "refused";
  }
  return "?";
}

// The shards of the cluster (or --shard only), from etcd's shard map.
caf::expected<std::vector<uint32_t>> shard_list(
    const options& o, mnemo::runtime::coordination::etcd_client& etcd) {
  std::vector<uint32_t> shards;
  if (o.shard) {
    shards.push_back(*o.shard);
    return shards;
  }
  auto map = etcd.get(o.prefix + "/shard-map");
  if (!map) return std::move(map.error());
  if (!*map)
    return mr::make_error(mr::errc::not_found,
                          "no " + o.prefix +
                              "/shard-map in etcd: no member of this "
                              "cluster started yet (--prefix?)");
  auto parsed = nlohmann::json::parse((*map)->value, nullptr, false);
  if (parsed.is_discarded() || !parsed.contains("shards") ||
      !parsed["shards"].is_number_unsigned())
    return mr::make_error(
        mr::errc::invalid_argument,
        o.prefix + "/shard-map holds no shard count: " + (*map)->value);
  for (uint32_t s = 0; s < parsed["shards"].get<uint32_t>(); ++s)
    shards.push_back(s);
  return shards;
}

// Moves each shard of `targets` from `old_member` to its target (observe,
// promote, remove; take_replace_step), a few shards at a time, until all
// are done or the timeout; each round reads each shard once, and each step
// is guarded by that read, so a run resumes.
// `summary` gets "shards" and "moved" and is printed at the end, with
// "refused" (and exit code 1) naming the shards whose replacement would
// have shrunk their set (another change got there first).
int move_shards(const options& o,
                mnemo::runtime::coordination::etcd_client& etcd,
                const std::string& old_member,
                const std::map<uint32_t, std::string>& targets, json summary) {
  namespace co = mr::coordination;
  using step = co::replace_step;
  std::map<uint32_t, std::string> pending;  // shard -> why it waits
  for (auto& [shard, target] : targets) pending[shard];
  std::set<uint32_t> started;  // a step was taken: counts in --parallel
  size_t moved = 0;
  std::vector<uint32_t> refused;  // next_replace_step refused these
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::seconds{o.timeout_s};
  while (!pending.empty()) {
    for (auto i = pending.begin(); i != pending.end();) {
      auto shard = i->first;
      auto& target = targets.at(shard);
      auto s = co::read_replica_set(etcd, o.prefix, shard);
      if (!s) return fail_with(s.error());
      // A shard not started yet starts only while fewer than --parallel
      // others catch up.
      if (!started.count(shard) && started.size() >= o.parallel &&
          co::next_replace_step(*s, old_member, target).what ==
              step::observe_new) {
        i->second = "waiting for a free slot (--parallel " +
                    std::to_string(o.parallel) + ")";
        ++i;
        continue;
      }
      auto r = co::take_replace_step(etcd, o.prefix, *s, old_member, target);
      if (!r) return fail_with(r.error());
      auto& [taken, set] = *r;
      if (taken.what == step::done) {
        if (started.erase(shard)) ++moved;
        print(json{{"shard", shard},
                   {"step", "done"},
                   {"voters", set.voters},
                   {"observers", set.observers}});
        i = pending.erase(i);
        continue;
      }
      if (taken.what == step::refused) {
        started.erase(shard);
        refused.push_back(shard);
        print(json{{"shard", shard},
                   {"step", "refused"},
                   {"why", taken.why},
                   {"voters", set.voters},
                   {"previous", set.previous}});
        i = pending.erase(i);
        continue;
      }
      if (taken.what == step::wait) {
        i->second = taken.why;
      } else {
        started.insert(shard);
        i->second.clear();
        print(json{{"shard", shard},
                   {"step", step_name(taken.what)},
                   {"to", target},
                   {"voters", set.voters},
                   {"observers", set.observers}});
      }
      ++i;
    }
    if (pending.empty()) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      json waiting = json::object();
      for (auto& [shard, why] : pending)
        waiting[std::to_string(shard)] = why.empty() ? "in progress" : why;
      print(json{{"error", "moving the shards of " + old_member +
                               " did not finish within " +
                               std::to_string(o.timeout_s) +
                               " s; run again to resume"},
                 {"code", "timeout"},
                 {"waiting", waiting}});
      return exit_error;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{200});
  }
  summary["shards"] = targets.size();
  summary["moved"] = moved;
  if (refused.empty()) {
    print(summary);
    return 0;
  }
  summary["refused"] = refused;
  summary["code"] = mr::to_string(mr::errc::invalid_argument);
  print(summary);
  return exit_error;
}

// replicas replace: every shard of --old (or --shard) goes to --new.
int replace(const options& o, mnemo::runtime::coordination::etcd_client& etcd) {
  // The new member must have started once: its replica id is in etcd (a
  // typo would otherwise observe shards that nobody catches up).
  auto known = etcd.get(o.prefix + "/members/" + o.new_member + "/replica");
  if (!known) return fail_with(known.error());
  if (!*known)
    return fail_with(mr::make_error(
        mr::errc::invalid_argument,
        "member '" + o.new_member + "' has not started in this cluster (no " +
            o.prefix + "/members/" + o.new_member +
            "/replica in etcd): start it first"));
  auto shards = shard_list(o, etcd);
  if (!shards) return fail_with(shards.error());
  std::map<uint32_t, std::string> targets;
  for (auto s : *shards) targets[s] = o.new_member;
  return move_shards(
      o, etcd, o.old_member, targets,
      json{{"action", "replace"}, {"old", o.old_member}, {"new", o.new_member}});
}

// replicas decommission: every shard of --member goes to a running member
// without a copy of it, the least loaded first (plan_decommission).
int decommission(const options& o,
                 mnemo::runtime::coordination::etcd_client& etcd) {
  namespace co = mr::coordination;
  auto shards = shard_list(o, etcd);
  if (!shards) return fail_with(shards.error());
  std::vector<co::replica_set> sets;
  for (auto shard : *shards) {
    auto s = co::read_replica_set(etcd, o.prefix, shard);
    if (!s) return fail_with(s.error());
    sets.push_back(std::move(*s));
  }
  auto live = co::live_members(etcd, o.prefix);
  if (!live) return fail_with(live.error());
  auto plan = co::plan_decommission(sets, *live, o.member);
  if (!plan) return fail_with(plan.error());
  json targets = json::object();
  for (auto& [shard, target] : *plan) targets[std::to_string(shard)] = target;
  print(json{{"plan", targets}, {"live", *live}});
  return move_shards(o, etcd, o.member, *plan,
                     json{{"action", "decommission"}, {"member", o.member}});
}

int replicas(const options& o) {
  namespace co = mr::coordination;
  co::etcd_settings settings;
  std::stringstream list{o.etcd};
  for (std::string endpoint; std::getline(list, endpoint, ',');)
    if (!endpoint.empty()) settings.endpoints.push_back(endpoint);
  auto client = co::etcd_client::connect(settings);
  if (!client) return fail(mr::describe(client.error()));
  auto& etcd = **client;
  auto& action = o.files[0];
  if (action == "replace") return replace(o, etcd);
  if (action == "decommission") return decommission(o, etcd);
  if (action == "forget") {
    auto deleted = co::forget_member(etcd, o.prefix, o.member);
    if (!deleted) return fail_with(deleted.error());
    print(json{{"action", "forget"}, {"member", o.member}, {"deleted", *deleted}});
    return 0;
  }
  auto shard = *o.shard;
  caf::expected<co::replica_set> result{co::replica_set{}};
  if (action == "status")
    result = co::read_replica_set(etcd, o.prefix, shard);
  else if (action == "observe")
    result = co::observe(etcd, o.prefix, shard, o.member);
  else if (action == "unobserve")
    result = co::unobserve(etcd, o.prefix, shard, o.member);
  else if (action == "promote")
    result = co::promote(etcd, o.prefix, shard, o.member);
  else if (action == "remove")
    result = co::remove_voter(etcd, o.prefix, shard, o.member);
  else
    result = co::abort_change(etcd, o.prefix, shard);
  if (!result) return fail_with(result.error());
  auto line = set_json(*result);
  line["action"] = action;
  print(line);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto o = parse(argc, argv);
  try {
    if (o.command == "replicas") return replicas(o);
    if (o.command == "plan" || o.command == "export") return plan_or_export(o);
    return import_or_release(o);
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}
