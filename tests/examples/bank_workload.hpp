#pragma once

// A bank workload for end-to-end tests: concurrent clients deposit,
// withdraw, transfer and send invalid requests; a ledger records what the
// node acknowledged and what is unknown (the connection died), so that
// unknown commands can be retried with the same ids after a restart and
// the final state can be computed exactly.

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "node_process.hpp"

namespace testnode {

struct money_op {
  std::string account;
  bool deposit = true;
  int64_t amount = 0;
  std::string command_id;
};

struct transfer_op {
  std::string id;
  std::string from;
  std::string to;
  int64_t amount = 0;
};

class ledger {
 public:
  static constexpr int64_t funding = 100000;

  explicit ledger(size_t accounts) {
    for (size_t i = 0; i < accounts; ++i)
      names_.push_back("acc" + std::to_string(i));
  }

  const std::vector<std::string>& accounts() const { return names_; }

  /// Opens and funds every account (idempotently: retries are safe).
  bool open_all(client& c) {
    for (auto& id : names_) {
      auto r =
          c.call("POST", "/accounts", R"({"id":")" + id + R"(","owner":"o"})");
      if (!r || (r->status != 201 && r->status != 409)) return false;
      auto f = c.call("POST", "/accounts/" + id + "/deposits",
                      R"({"amount":)" + std::to_string(funding) +
                          R"(,"command_id":"fund"})");
      if (!f || f->status != 200) return false;
    }
    return true;
  }

  /// Runs one client until `stop` or a transport error / 503.
  void work(uint16_t port, unsigned seed, const std::atomic<bool>& stop) {
    client c{port};
    std::mt19937 rng{seed};
    size_t n = 0;
    while (!stop) {
      auto tag = "s" + std::to_string(seed) + "-" + std::to_string(n++);
      auto pick = rng() % 100;
      auto acct = names_[rng() % names_.size()];
      if (pick < 45 || pick >= 97) {
        bool invalid = pick >= 97;
        money_op op{acct, pick < 30, 1 + static_cast<int64_t>(rng() % 150),
                    "m" + tag};
        auto body = R"({"amount":)" +
                    (invalid ? std::string{"-1"} : std::to_string(op.amount)) +
                    R"(,"command_id":")" + op.command_id + R"("})";
        auto r = c.call(
            "POST",
            "/accounts/" + acct + (op.deposit ? "/deposits" : "/withdrawals"),
            body);
        if (!settle_money(op, r, invalid, c)) return;
      } else {
        auto to = names_[rng() % names_.size()];
        if (to == acct || rng() % 20 == 0) to = "ghost";
        transfer_op op{"t" + tag, acct, to,
                       1 + static_cast<int64_t>(rng() % 50)};
        auto r = c.call("POST", "/transfers", transfer_body(op));
        if (!settle_transfer(op, r, c)) return;
      }
    }
  }

  /// Retries every unknown command with its original ids until each has a
  /// definite answer. Returns false on a transport error.
  bool retry_unknown(client& c) {
    std::vector<money_op> money;
    std::vector<transfer_op> transfers;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      money.swap(unknown_money_);
      transfers.swap(unknown_transfers_);
    }
    for (auto& op : money) {
      auto r = c.call("POST",
                      "/accounts/" + op.account +
                          (op.deposit ? "/deposits" : "/withdrawals"),
                      R"({"amount":)" + std::to_string(op.amount) +
                          R"(,"command_id":")" + op.command_id + R"("})");
      if (!r || r->status >= 500) {
        record_unknown(op);
        return false;
      }
      record_answer(op, *r);
    }
    for (auto& op : transfers) {
      auto r = c.call("POST", "/transfers", transfer_body(op));
      if (!r || r->status >= 500) {
        std::lock_guard<std::mutex> guard{mtx_};
        unknown_transfers_.push_back(op);
        return false;
      }
      std::lock_guard<std::mutex> guard{mtx_};
      if (r->status == 202)
        started_.push_back(op);
      else
        ++failures_;
    }
    return true;
  }

  /// Waits until no started transfer runs; returns its final statuses.
  std::map<std::string, std::string> settle_transfers(
      client& c, std::chrono::seconds timeout) {
    std::map<std::string, std::string> result;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (auto& op : started_) {
      for (;;) {
        auto r = c.call("GET", "/transfers/" + op.id);
        std::string status = r ? r->json().value("status", "?") : "?";
        if (status != "running" ||
            std::chrono::steady_clock::now() > deadline) {
          result[op.id] = status;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds{10});
      }
    }
    return result;
  }

  /// The balance every account must have, given the final transfer
  /// statuses.
  std::map<std::string, int64_t> expected(
      const std::map<std::string, std::string>& statuses) const {
    std::map<std::string, int64_t> result;
    for (auto& id : names_) result[id] = funding;
    for (auto& [id, delta] : acked_) result[id] += delta;
    for (auto& op : started_) {
      auto i = statuses.find(op.id);
      if (i == statuses.end() || i->second != "completed") continue;
      result[op.from] -= op.amount;
      result[op.to] += op.amount;
    }
    return result;
  }

  const std::vector<transfer_op>& transfers() const { return started_; }
  size_t unknown_count() {
    std::lock_guard<std::mutex> guard{mtx_};
    return unknown_money_.size() + unknown_transfers_.size();
  }
  /// Answers that broke the API contract (e.g. a 400 for a valid request).
  size_t failures() const { return failures_; }
  size_t acked_commands() const { return acked_count_; }
  /// Requests written that got no HTTP answer.
  size_t lost_in_flight() const { return lost_in_flight_; }
  size_t shutting_down_answers() const { return shutting_down_; }

 private:
  static std::string transfer_body(const transfer_op& op) {
    return R"({"id":")" + op.id + R"(","from":")" + op.from + R"(","to":")" +
           op.to + R"(","amount":)" + std::to_string(op.amount) + "}";
  }

  // Returns whether the client may go on.
  bool settle_money(const money_op& op, const std::optional<reply>& r,
                    bool invalid, client& c) {
    if (!r || r->status >= 500) {
      note_break(r, c);
      if (!invalid && outcome_unknown(r, c)) record_unknown(op);
      return false;
    }
    if (invalid) {
      if (r->status != 400) ++failures_;
      return true;
    }
    record_answer(op, *r);
    return r->keep_alive;
  }

  bool settle_transfer(const transfer_op& op, const std::optional<reply>& r,
                       client& c) {
    if (!r || r->status >= 500) {
      note_break(r, c);
      if (outcome_unknown(r, c)) {
        std::lock_guard<std::mutex> guard{mtx_};
        unknown_transfers_.push_back(op);
      }
      return false;
    }
    std::lock_guard<std::mutex> guard{mtx_};
    if (r->status == 202)
      started_.push_back(op);
    else
      ++failures_;
    return r->keep_alive;
  }

  // A request never written, or refused as shutting down, did nothing.
  static bool outcome_unknown(const std::optional<reply>& r, const client& c) {
    if (!r) return c.sent;
    return r->json().value("error", "") != "shutting_down";
  }

  void note_break(const std::optional<reply>& r, const client& c) {
    std::lock_guard<std::mutex> guard{mtx_};
    if (!r && c.sent) ++lost_in_flight_;
    if (r && r->json().value("error", "") == "shutting_down") ++shutting_down_;
  }

  void record_unknown(const money_op& op) {
    std::lock_guard<std::mutex> guard{mtx_};
    unknown_money_.push_back(op);
  }

  void record_answer(const money_op& op, const reply& r) {
    std::lock_guard<std::mutex> guard{mtx_};
    if (r.status == 200) {
      acked_[op.account] += op.deposit ? op.amount : -op.amount;
      ++acked_count_;
    } else if (!(r.status == 409 && !op.deposit &&
                 r.json().value("error", "") == "insufficient_funds")) {
      ++failures_;
    }
  }

  std::vector<std::string> names_;
  std::mutex mtx_;
  std::map<std::string, int64_t> acked_;
  std::vector<money_op> unknown_money_;
  std::vector<transfer_op> unknown_transfers_;
  std::vector<transfer_op> started_;
  size_t failures_ = 0;
  size_t acked_count_ = 0;
  size_t lost_in_flight_ = 0;
  size_t shutting_down_ = 0;
};

}  // namespace testnode
