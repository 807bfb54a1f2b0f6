#pragma once

// Whether every replica of every shard of a replicated cluster holds the
// same log, as the members' `GET /admin/shards/{n}` say (end, digest and
// epoch history).

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "node_process.hpp"

namespace testnode {

// Asks every member (`members`, one client each) about each of `shards`
// until every shard has `replicas` replicas with the same end, digest and
// epochs,
// at most `within`. Returns what still differs then, or "" (logged as a
// test message).
inline std::string shard_log_difference(const std::vector<client*>& members,
                                        uint32_t shards, size_t replicas,
                                        std::chrono::milliseconds within) {
  auto deadline = std::chrono::steady_clock::now() + within;
  std::string diff;
  for (;;) {
    diff.clear();
    for (uint32_t shard = 0; shard < shards && diff.empty(); ++shard) {
      auto name = "shard " + std::to_string(shard);
      std::string first;
      size_t holders = 0;
      for (size_t i = 0; i < members.size(); ++i) {
        auto member = "n" + std::to_string(i + 1);
        auto r =
            members[i]->call("GET", "/admin/shards/" + std::to_string(shard));
        if (r && r->status == 404 &&
            r->json().value("error", "") == "not_a_replica")
          continue;
        if (!r || r->status != 200) {
          diff = name + " on " + member + ": " +
                 (r ? r->body : members[i]->error);
          break;
        }
        auto body = r->json();
        auto log = std::to_string(body.value("end", uint64_t{0})) + "/" +
                   body.value("digest", "") + "/" + body["epochs"].dump();
        ++holders;
        if (first.empty()) first = log;
        if (log != first)
          diff = name + ": " + first + " vs " + log + " on " + member;
      }
      if (diff.empty() && holders != replicas)
        diff = name + " has " + std::to_string(holders) + " replicas";
    }
    if (diff.empty() || std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds{200});
  }
  if (diff.empty())
    BOOST_TEST_MESSAGE("every replica of the " << shards
                                               << " shards holds the same log");
  return diff;
}

}  // namespace testnode
