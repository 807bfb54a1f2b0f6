// cluster_bench: remote durable commands between two cluster nodes on
// loopback. Node A sends deposits for accounts that node B owns, through
// A's router, with `in_flight` requests outstanding; B persists them in its
// journal (sync) and the replies travel back. One JSON object per line.
//
//   cluster_bench [--quick] [--seconds S] [--in-flight N] [--no-tls]
//                 [--dir PATH] [--durability MODE]
//
// Both nodes run in this process (two actor systems, two journals) and
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
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "../examples/bank/account.hpp"
#include "mnemo/actors/aggregate_registry.hpp"
#include "mnemo/actors/remote_aggregate.hpp"
#include "mnemo/runtime/cluster.hpp"
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
      "n1 n2; do openssl req" +
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

member start(const options& opt, const std::string& id,
             const std::string& members, const fs::path& data,
             const std::string& certs) {
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
  cfg.cluster.plain_tcp = !opt.tls;
  if (opt.tls) {
    cfg.cluster.tls_certificate = certs + "/" + id + ".pem";
    cfg.cluster.tls_key = certs + "/" + id + ".key";
    cfg.cluster.tls_ca = certs + "/ca.pem";
  }
  bank::add_error_category(cfg);
  auto n = mnemo::runtime::node::start(cfg);
  if (!n) die(mnemo::runtime::describe(n.error()));
  m.node = std::move(*n);
  bank::account::register_types(m.node->registry());
  auto local = mnemo::actors::spawn_aggregate_registry<bank::account>(*m.node);
  m.accounts = m.node->cluster()->route(
      bank::account::type_name, local,
      mnemo::actors::aggregate_protocol<bank::account>());
  m.node->track(m.accounts);
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
    else
      die("unknown option " + a +
          " (--quick, --seconds S, --in-flight N, --no-tls, --dir PATH, "
          "--durability MODE)");
  }
  if (opt.quick) opt.seconds = 1;
  auto base = opt.dir / ("mnemo-cluster-bench-" + std::to_string(::getpid()));
  fs::remove_all(base);
  fs::create_directories(base);
  auto certs = opt.tls ? make_certificates(base / "certs") : std::string{};
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
  std::cout << out.dump() << std::endl;
  return st.done > 0 ? 0 : 1;
}
