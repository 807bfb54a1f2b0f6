#pragma once

// Three example nodes as a replicated cluster on loopback (one real etcd,
// --cluster.replicas=3, lease TTL 2 s), the real binaries as processes,
// and the client loop that rides out a failover. Used by the bank_ha and
// orders_ha suites.

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../support/etcd_server.hpp"
#include "../support/free_ports.hpp"
#include "node_process.hpp"

namespace testnode {

struct ha_cluster {
  using steady = std::chrono::steady_clock;

  mnemo::test::etcd_server etcd;
  std::string binary;
  uint32_t shards;
  /// Options every member gets besides the cluster's.
  std::vector<std::string> extra;
  uint16_t base = mnemo::test::free_port_block(3);
  std::string members;
  std::vector<std::string> dirs;
  std::vector<std::unique_ptr<process>> nodes;

  /// Starts `binary` as members n1..n3, data directories named after
  /// `prefix`.
  ha_cluster(std::string binary_path, const std::string& prefix,
             uint32_t shard_count, std::vector<std::string> extra_args = {})
      : binary(std::move(binary_path)),
        shards(shard_count),
        extra(std::move(extra_args)) {
    for (int i = 0; i < 3; ++i) {
      if (i > 0) members += ",";
      members += "n" + std::to_string(i + 1) +
                 "@127.0.0.1:" + std::to_string(base + i);
      dirs.push_back(temp_dir(prefix + "-n" + std::to_string(i + 1)));
    }
    for (int i = 0; i < 3; ++i) nodes.push_back(start(i));
  }

  /// Starts member `i` (again); `replicas` is its --cluster.replicas.
  std::unique_ptr<process> start(int i, const std::string& replicas = "3") {
    return start_as("n" + std::to_string(i + 1), dirs[i], members, replicas);
  }

  /// Starts a member that is in no member list, `id` on `dir`, with n1 as
  /// its seed: it joins through etcd's member directory.
  std::unique_ptr<process> start_new(const std::string& id,
                                     const std::string& dir) {
    auto seed = members.substr(0, members.find(','));
    return start_as(id, dir,
                    seed + "," + id + "@127.0.0.1:" +
                        std::to_string(mnemo::test::free_port_block(1)));
  }

  std::unique_ptr<process> start_as(const std::string& id,
                                    const std::string& dir,
                                    const std::string& member_list,
                                    const std::string& replicas = "3") {
    std::vector<std::string> args{
        "--data", dir, "--listen", "127.0.0.1:0",
        "--cluster.node-id=" + id,
        "--cluster.members=" + member_list,
        "--cluster.shards=" + std::to_string(shards),
        "--cluster.secret=0123456789abcdef-ha-secret",
        "--cluster.plain-tcp", "--cluster.retry-ms=100",
        "--cluster.etcd=127.0.0.1:" + std::to_string(etcd.client_port),
        "--cluster.replicas=" + replicas, "--cluster.lease-ttl-s=2"};
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<process>(binary, args);
  }

  // The shards member `i` leads as its /health says, once it knows a
  // leader for every shard; nothing if it does not answer or does not know
  // one yet.
  std::optional<std::vector<uint32_t>> leading(size_t i) {
    if (!nodes[i]) return std::nullopt;
    client c{nodes[i]->port()};
    auto h = c.call("GET", "/health");
    auto body = h ? h->json() : nlohmann::json{};
    if (!body.contains("cluster") ||
        body["cluster"].value("leaderless", size_t{1}) != 0)
      return std::nullopt;
    std::vector<uint32_t> out;
    for (auto& s : body["cluster"]["leading"]) out.push_back(s.get<uint32_t>());
    return out;
  }

  using led_shards = std::vector<std::optional<std::vector<uint32_t>>>;

  // Waits (at most `within`) until every running member knows a leader for
  // every shard and `pick` finds a member in what each leads (nothing for
  // a stopped member); returns that member.
  template <class Pick>
  std::optional<size_t> when_settled(std::chrono::seconds within, Pick pick) {
    auto deadline = steady::now() + within;
    while (steady::now() < deadline) {
      led_shards led(nodes.size());
      bool settled = true;
      for (size_t i = 0; i < nodes.size(); ++i)
        if (nodes[i] && !(led[i] = leading(i))) settled = false;
      if (settled)
        if (auto found = pick(led)) return found;
      std::this_thread::sleep_for(std::chrono::milliseconds{50});
    }
    return std::nullopt;
  }

  // The member that leads `shard` as its own /health says, once every
  // running member knows a leader for every shard.
  std::optional<size_t> leader_of(uint32_t shard,
                                  std::chrono::seconds within) {
    return when_settled(within,
                        [shard](const led_shards& led) -> std::optional<size_t> {
                          for (size_t i = 0; i < led.size(); ++i)
                            if (led[i])
                              for (auto s : *led[i])
                                if (s == shard) return i;
                          return std::nullopt;
                        });
  }

  // The running member that leads the most shards, once every running
  // member knows a leader for every shard (at most `within`).
  std::optional<size_t> busiest(std::chrono::seconds within) {
    return when_settled(within,
                        [](const led_shards& led) -> std::optional<size_t> {
                          std::optional<size_t> victim;
                          size_t most = 0;
                          for (size_t i = 0; i < led.size(); ++i)
                            if (led[i] && led[i]->size() > most) {
                              most = led[i]->size();
                              victim = i;
                            }
                          return victim;
                        });
  }
};

// Sends until an answer other than 503 comes (at most `within`); checks
// that every 503 is a retryable failover answer and nothing is a 500.
inline std::optional<reply> until_served(client& c, const std::string& method,
                                         const std::string& target,
                                         const std::string& body,
                                         std::chrono::seconds within,
                                         size_t* refusals = nullptr) {
  auto deadline = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = c.call(method, target, body);
    if (r && r->status != 503) return r;
    if (r) {
      auto code = r->json().value("error", std::string{});
      BOOST_CHECK_MESSAGE(code == "owner_unavailable" || code == "owner_lost",
                          "503 " << r->body);
      if (refusals) ++*refusals;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{50});
  }
  return std::nullopt;
}

}  // namespace testnode
