// kill -9 of a process appending in sync mode, at random moments: every
// acknowledged append survives, no batch is partial, and sequences and
// global positions stay gap-free.

#include <chrono>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include "child_modes.hpp"
#include "test_support.hpp"

using namespace mnemo::persistence;
using mnemo::test::temp_dir;

namespace {

struct ack {
  std::string stream;
  std::string tag;
  uint64_t first_seq, last_seq, first_pos, last_pos;
};

// Reads the child's output until `deadline`, then kills it with SIGKILL and
// collects whatever it wrote before dying.
std::string run_and_kill(mnemo::test::child_process child,
                         std::chrono::milliseconds after_ready) {
  std::string out;
  char buf[4096];
  auto deadline = std::chrono::steady_clock::time_point::max();
  for (;;) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    if (deadline == std::chrono::steady_clock::time_point::max() &&
        out.find("ready\n") != std::string::npos)
      deadline = now + after_ready;
    pollfd pfd{child.out_fd, POLLIN, 0};
    if (::poll(&pfd, 1, 5) > 0) {
      auto n = ::read(child.out_fd, buf, sizeof(buf));
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
  }
  ::kill(child.pid, SIGKILL);
  auto rest = mnemo::test::finish_child(child);
  return out + rest.out;
}

std::vector<ack> parse_acks(const std::string& out) {
  std::vector<ack> result;
  std::istringstream in{out};
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof())
      break;  // A line cut by the kill has no newline: it was not acked.
    BOOST_REQUIRE_MESSAGE(line.rfind("error", 0) != 0, line);
    if (line.rfind("ack ", 0) != 0) continue;
    std::istringstream fields{line.substr(4)};
    ack a;
    fields >> a.stream >> a.tag >> a.first_seq >> a.last_seq >> a.first_pos >>
        a.last_pos;
    result.push_back(a);
  }
  return result;
}

// Checks the whole journal: gap-free positions and sequences, complete
// batches, and every acknowledged batch present where it was acked.
void verify(journal& j, const std::vector<ack>& acks) {
  auto head = j.head_position();
  std::map<std::string, uint64_t> last_seq;
  std::map<std::string, std::pair<size_t, size_t>> batches;  // tag -> seen/n
  uint64_t expected_pos = 1;
  for (;;) {
    auto events = j.read_all(expected_pos, 1000);
    BOOST_REQUIRE_MESSAGE(events, mnemo::test::why(events));
    if (events->empty()) break;
    for (auto& ev : *events) {
      BOOST_REQUIRE_EQUAL(ev.position, expected_pos);
      ++expected_pos;
      BOOST_REQUIRE_EQUAL(ev.sequence, last_seq[ev.stream_id] + 1);
      last_seq[ev.stream_id] = ev.sequence;
      auto v = mnemo::test::event_value(ev);
      auto slash = v.rfind('/');
      auto colon = v.rfind(':', slash);
      auto& b = batches[v.substr(0, colon)];
      ++b.first;
      b.second = std::stoul(v.substr(slash + 1));
    }
  }
  BOOST_REQUIRE_EQUAL(expected_pos - 1, head);
  for (auto& [tag, seen] : batches)
    BOOST_REQUIRE_MESSAGE(
        seen.first == seen.second,
        "partial batch " << tag << ": " << seen.first << " of " << seen.second);
  for (auto& [stream, seq] : last_seq) {
    auto highest = j.highest_sequence(stream);
    BOOST_REQUIRE(highest);
    BOOST_REQUIRE_EQUAL(*highest, seq);
  }
  for (auto& a : acks) {
    auto events = j.read_stream(a.stream, a.first_seq, a.last_seq, 100);
    BOOST_REQUIRE_MESSAGE(events, mnemo::test::why(events));
    BOOST_REQUIRE_MESSAGE(events->size() == a.last_seq - a.first_seq + 1,
                          "acknowledged batch " << a.tag << " lost");
    for (size_t i = 0; i < events->size(); ++i) {
      auto& ev = (*events)[i];
      BOOST_REQUIRE_EQUAL(ev.position, a.first_pos + i);
      BOOST_REQUIRE(mnemo::test::event_value(ev).rfind(a.tag + ":", 0) == 0);
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(crash)

BOOST_AUTO_TEST_CASE(acknowledged_appends_survive_kill_9) {
  temp_dir dir;
  auto data = dir.sub("data");
  std::mt19937 rng{std::random_device{}()};
  std::vector<ack> all_acks;
  constexpr int rounds = 24;
  for (int round = 0; round < rounds; ++round) {
    auto child =
        mnemo::test::spawn_child("crash-writer", {data, std::to_string(round)});
    BOOST_REQUIRE(child.pid > 0);
    auto delay = std::chrono::milliseconds{5 + rng() % 150};
    auto out = run_and_kill(child, delay);
    auto acks = parse_acks(out);
    BOOST_TEST_MESSAGE("round " << round << ": killed after " << delay.count()
                                << " ms, " << acks.size()
                                << " acknowledged batches");
    all_acks.insert(all_acks.end(), acks.begin(), acks.end());
    auto j = mnemo::test::open_journal(data, durability::sync);
    verify(*j, all_acks);
  }
  BOOST_CHECK_GT(all_acks.size(), size_t{rounds});
}

BOOST_AUTO_TEST_SUITE_END()
