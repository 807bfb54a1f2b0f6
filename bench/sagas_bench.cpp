// sagas_bench: two-step transfer sagas (withdraw, deposit) end to end on a
// node, `concurrent` of them in flight. A saga counts when its
// mnemo.saga.completed event is committed (seen by a projection). Checks
// that money is conserved. Then sagas.recovery: how long a saga with
// 100,000 events takes to recover, without and with a snapshot of its
// progress. One JSON object per line.
//
//   sagas_bench [--quick] [--dir PATH] [--durability MODE]

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "../examples/bank/transfer.hpp"
#include "mnemo/actors/aggregate_registry.hpp"
#include "mnemo/actors/projection.hpp"
#include "mnemo/persistence/offset_store.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/node.hpp"
#include "mnemo/sagas/saga_progress.hpp"

namespace fs = std::filesystem;
namespace mp = mnemo::persistence;
using json = nlohmann::json;
using steady = std::chrono::steady_clock;
using done_atom = caf::atom_constant<caf::atom("b_done")>;
using go_atom = caf::atom_constant<caf::atom("b_go")>;

namespace {

constexpr size_t accounts = 1000;
constexpr int64_t funding = 1'000'000;

[[noreturn]] void die(const std::string& what) {
  std::cerr << "sagas_bench: " << what << "\n";
  std::exit(1);
}

struct result {
  double seconds = 0;
  std::vector<double> latencies_ms;
};

// Keeps `concurrent` transfers running until `total` completed.
caf::behavior driver(caf::event_based_actor* self, caf::actor transfers,
                     size_t total, size_t concurrent,
                     std::shared_ptr<result> out, caf::actor done_to) {
  struct state {
    std::unordered_map<std::string, steady::time_point> started;
    size_t next = 0;
    size_t completed = 0;
    steady::time_point t0;
    std::mt19937 rng{42};
  };
  auto st = std::make_shared<state>();
  auto start_one = [=] {
    auto k = st->next++;
    auto from = st->rng() % accounts;
    auto to = (from + 1 + st->rng() % (accounts - 1)) % accounts;
    auto id = "t" + std::to_string(k);
    st->started.emplace(id, steady::now());
    bank::transfer_data data{"a" + std::to_string(from),
                             "a" + std::to_string(to), 1};
    self->request(transfers, caf::infinite, mnemo::runtime::route_atom::value,
                  id, caf::make_message(mnemo::sagas::start_atom::value, data))
        .then([](mnemo::sagas::saga_status&) {},
              [](caf::error& err) { die(caf::to_string(err)); });
  };
  return {
      [=](go_atom) {
        st->t0 = steady::now();
        for (size_t i = 0; i < concurrent && st->next < total; ++i) start_one();
      },
      [=](done_atom, const std::string& id) {
        auto i = st->started.find(id);
        if (i == st->started.end()) return;
        out->latencies_ms.push_back(
            std::chrono::duration<double, std::milli>(steady::now() - i->second)
                .count());
        st->started.erase(i);
        if (++st->completed == total) {
          out->seconds =
              std::chrono::duration<double>(steady::now() - st->t0).count();
          self->send(done_to, done_atom::value, std::string{});
          self->quit();
          return;
        }
        if (st->next < total) start_one();
      },
  };
}

}  // namespace

void run(mnemo::runtime::node& node, caf::actor accts, caf::actor transfers,
         const std::string& durability, size_t total);

// sagas.recovery: a saga whose stream holds `events` events (a start, a
// failed attempt of its first step whose retry is due far in the future,
// so that the recovered saga sends nothing, and deliveries it ignored),
// appended in batches; with
// `snapshot`, a snapshot of its progress at the last one (what
// saga_context::snapshot_every takes). Then times spawn -> first status
// reply of the saga, 5 times, each from a new registry.
void bench_recovery(mnemo::runtime::node& node, uint64_t events,
                    bool snapshot) {
  namespace msg = mnemo::sagas;
  const std::string id = snapshot ? "long-snap" : "long";
  auto stream = msg::saga_stream<bank::transfer>(id);
  msg::saga_progress progress;
  std::vector<mp::new_event> batch;
  auto add = [&](const msg::saga_event& ev) {
    progress.apply(ev);
    auto encoded = std::visit(
        [&](const auto& e) { return node.registry().to_event(e); }, ev);
    if (!encoded) die(encoded.error().to_string());
    batch.push_back(std::move(*encoded));
    if (batch.size() == 1000) {
      auto res = node.journal().append(stream, std::move(batch),
                                       mp::expected_version::any());
      if (!res) die(res.error().to_string());
      batch.clear();
    }
  };
  msg::saga_started start;
  bank::transfer_data data{"a1", "a2", 1};
  msgpack::sbuffer packed;
  msgpack::pack(packed, data);
  start.data.assign(packed.data(), packed.size());
  add(start);
  // The first step failed once; its retry is due far in the future.
  msg::saga_step_failed failed;
  failed.step = 0;
  failed.attempt = 1;
  failed.error = "owner_unavailable";
  failed.retry_at_ms = int64_t{1'700'000'000'000} + 3'600'000;  // in an hour
  add(failed);
  // Then events delivered to the saga that did not concern its step, as a
  // long-running process manager records them.
  for (uint64_t k = 2; k < events; ++k) {
    msg::saga_event_ignored ignored;
    ignored.position = k;
    ignored.step = 0;
    ignored.type = "bank.noise";
    ignored.reason = "not for this step";
    add(ignored);
  }
  if (!batch.empty()) {
    auto res = node.journal().append(stream, std::move(batch),
                                     mp::expected_version::any());
    if (!res) die(res.error().to_string());
  }
  if (snapshot) {
    mp::snapshot snap;
    snap.meta.stream_id = stream;
    snap.meta.sequence = events;
    if (auto err = node.registry().encode(progress, snap.type,
                                          snap.schema_version, snap.payload))
      die(err.to_string());
    if (auto err = node.journal().snapshots().save(std::move(snap)))
      die(err.to_string());
  }
  mnemo::sagas::saga_context ctx{&node.journal(), &node.registry(),
                                 &node.completions(), {}, {}, nullptr};
  ctx.wall_ms = [] { return int64_t{1'700'000'000'000}; };
  caf::scoped_actor self{node.system()};
  std::vector<double> ms;
  for (int round = 0; round < 5; ++round) {
    auto reg = mnemo::sagas::spawn_saga_registry<bank::transfer>(
        node.system(), ctx, {});
    auto t0 = steady::now();
    self->request(reg, caf::infinite, mnemo::runtime::route_atom::value, id,
                  caf::make_message(mnemo::sagas::status_atom::value))
        .receive(
            [&](mnemo::sagas::saga_status& st) {
              ms.push_back(std::chrono::duration<double, std::milli>(
                               steady::now() - t0)
                               .count());
              if (st.status != "running" || st.attempt != 1)
                die("recovered " + st.status + " at attempt " +
                    std::to_string(st.attempt) + ": " + st.error);
            },
            [](caf::error& err) { die(caf::to_string(err)); });
    self->send_exit(reg, caf::exit_reason::user_shutdown);
    self->wait_for(reg);
  }
  auto first = ms.front();
  std::sort(ms.begin(), ms.end());
  auto round2 = [](double x) { return std::round(x * 100) / 100; };
  std::cout << json{{"bench", "sagas.recovery"},
                    {"events", events},
                    {"snapshot", snapshot},
                    {"ms", round2(ms[2])},
                    {"max_ms", round2(ms.back())},
                    {"first_ms", round2(first)}}
                   .dump()
            << std::endl;
}

int main(int argc, char** argv) {
  bool quick = false;
  fs::path dir = fs::temp_directory_path();
  std::string durability = "sync";
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--quick")
      quick = true;
    else if (arg == "--dir" && i + 1 < argc)
      dir = argv[++i];
    else if (arg == "--durability" && i + 1 < argc)
      durability = argv[++i];
    else
      die("unknown option " + arg);
  }
  auto data_dir = dir / "mnemo-sbench";
  fs::remove_all(data_dir);
  mnemo::runtime::node_config cfg;
  cfg.data_dir = data_dir.string();
  cfg.durability = durability;
  cfg.initial_map_mib = 1024;
  cfg.snapshot_every = 0;
  auto started = mnemo::runtime::node::start(cfg);
  if (!started) die(mnemo::runtime::describe(started.error()));
  auto& node = **started;
  mnemo::actors::register_types<bank::account>(node.registry());
  mnemo::sagas::register_types(node.registry());
  auto accts = mnemo::actors::spawn_aggregate_registry<bank::account>(node);
  mnemo::sagas::saga_context ctx{&node.journal(),
                                 &node.registry(),
                                 &node.completions(),
                                 {{"account", accts}},
                                 {},
                                 nullptr};
  auto transfers = mnemo::sagas::spawn_saga_registry<bank::transfer>(
      node.system(), ctx, cfg.registry_settings());
  node.track(transfers);
  run(node, accts, transfers, durability, quick ? 5000 : 50000);
  bench_recovery(node, quick ? 10000 : 100000, false);
  bench_recovery(node, quick ? 10000 : 100000, true);
  started->reset();
  fs::remove_all(data_dir);
}

void run(mnemo::runtime::node& node, caf::actor accts, caf::actor transfers,
         const std::string& durability, size_t total) {
  caf::scoped_actor self{node.system()};
  // Open and fund the accounts.
  for (size_t i = 0; i < accounts; ++i)
    for (auto cmd : {bank::account::command{bank::open_account{"o"}},
                     bank::account::command{bank::deposit{funding}}})
      self->request(accts, caf::infinite, mnemo::runtime::route_atom::value,
                    "a" + std::to_string(i),
                    mnemo::actors::command_message<bank::account>(cmd))
          .receive([](bank::account_reply&) {},
                   [](caf::error& err) { die(caf::to_string(err)); });
  auto head_before = node.journal().head_position();
  size_t concurrent = 1000;
  auto out = std::make_shared<result>();
  auto drv = node.system().spawn(driver, transfers, total, concurrent, out,
                                 caf::actor{self});
  // Completed sagas, observed on the journal.
  mnemo::actors::projection_spec spec;
  spec.name = "bench.completed";
  spec.filter.event_types = {"mnemo.saga.completed"};
  spec.options.group_size = 1000;
  spec.effect = [drv](const std::vector<mp::event_envelope>& group) {
    for (auto& env : group)
      caf::anon_send(
          drv, done_atom::value,
          env.stream_id.substr(std::string{"saga-transfer-"}.size()));
    return mp::error{};
  };
  if (auto err = node.journal().offsets().store(spec.name, head_before))
    die(err.to_string());
  auto proj = mnemo::actors::spawn_projection(
      node.system(), {&node.journal(), &node.completions(), node.event_bus()},
      spec);
  if (!proj) die(node.system().render(proj.error()));
  node.track(*proj);
  self->send(drv, go_atom::value);
  self->receive([](done_atom, const std::string&) {});
  auto events = node.journal().head_position() - head_before;
  // Money is conserved: the balances still sum up to the funding.
  int64_t sum = 0;
  for (size_t i = 0; i < accounts; ++i)
    self->request(accts, caf::infinite, mnemo::runtime::route_atom::value,
                  "a" + std::to_string(i),
                  caf::make_message(caf::get_atom::value))
        .receive([&](bank::account_state& s) { sum += s.balance; },
                 [](caf::error& err) { die(caf::to_string(err)); });
  auto& lat = out->latencies_ms;
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double q) {
    return std::round(lat[static_cast<size_t>(q * (lat.size() - 1))] * 100) /
           100;
  };
  std::cout << json{{"bench", "sagas.transfers"},
                    {"concurrent", concurrent},
                    {"durability", durability},
                    {"transfers", total},
                    {"sagas_per_s", std::llround(total / out->seconds)},
                    {"p50_ms", pct(0.5)},
                    {"p99_ms", pct(0.99)},
                    {"events_per_saga",
                     std::round(double(events) / total * 100) / 100},
                    {"money_conserved",
                     sum == funding * static_cast<int64_t>(accounts)},
                    {"allocator", MNEMO_ALLOCATOR}}
                   .dump()
            << std::endl;
  node.journal().offsets().remove(spec.name);
}
