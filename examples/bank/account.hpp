#pragma once

// The bank account aggregate: open, deposit, withdraw (no overdraft), close.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include <caf/actor_system_config.hpp>
#include <caf/make_message.hpp>
#include <caf/meta/type_name.hpp>
#include <msgpack.hpp>

#include "mnemo/actors/effect.hpp"
#include "mnemo/persistence/event_registry.hpp"
#include "mnemo/runtime/error_enum.hpp"

namespace bank {

// -- commands -----------------------------------------------------------------

struct open_account {
  std::string owner;
};
struct deposit {
  int64_t amount = 0;
};
struct withdraw {
  int64_t amount = 0;
};
struct close_account {};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, open_account& x) {
  return f(caf::meta::type_name("open_account"), x.owner);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, deposit& x) {
  return f(caf::meta::type_name("deposit"), x.amount);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, withdraw& x) {
  return f(caf::meta::type_name("withdraw"), x.amount);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, close_account&) {
  return f(caf::meta::type_name("close_account"));
}

// -- events -------------------------------------------------------------------

struct account_opened {
  std::string owner;
  MSGPACK_DEFINE_MAP(owner)
};
struct money_deposited {
  int64_t amount = 0;
  MSGPACK_DEFINE_MAP(amount)
};
struct money_withdrawn {
  int64_t amount = 0;
  MSGPACK_DEFINE_MAP(amount)
};
struct account_closed {
  std::string reason;
  MSGPACK_DEFINE_MAP(reason)
};

inline bool operator==(const account_opened& x, const account_opened& y) {
  return x.owner == y.owner;
}
inline bool operator==(const money_deposited& x, const money_deposited& y) {
  return x.amount == y.amount;
}
inline bool operator==(const money_withdrawn& x, const money_withdrawn& y) {
  return x.amount == y.amount;
}
inline bool operator==(const account_closed& x, const account_closed& y) {
  return x.reason == y.reason;
}

// -- state and reply
// ------------------------------------------------------------

struct account_state {
  bool exists = false;
  bool open = false;
  std::string owner;
  int64_t balance = 0;
  MSGPACK_DEFINE_MAP(exists, open, owner, balance)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, account_state& x) {
  return f(caf::meta::type_name("account_state"), x.exists, x.open, x.owner,
           x.balance);
}

/// What every account command answers: the balance after it.
struct account_reply {
  int64_t balance = 0;
  MSGPACK_DEFINE_MAP(balance)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, account_reply& x) {
  return f(caf::meta::type_name("account_reply"), x.balance);
}

/// Rejections of account commands (category "bank"; stored and sent:
/// append codes, never reorder them).
MNEMO_ERROR_ENUM(account_errc, "bank",
                 none,
                 already_exists,
                 unknown_account,
                 insufficient_funds,
                 account_closed,
                 invalid_amount)

// -- the aggregate ------------------------------------------------------------

struct account {
  using state = account_state;
  using command = std::variant<open_account, deposit, withdraw, close_account>;
  using event = std::variant<account_opened, money_deposited, money_withdrawn,
                             account_closed>;
  using reply = account_reply;
  static constexpr const char* type_name = "account";

  using effect = mnemo::actors::effect<account>;

  static void register_types(mnemo::persistence::event_registry& types) {
    types.add<account_opened>("account.opened");
    types.add<money_deposited>("account.deposited");
    types.add<money_withdrawn>("account.withdrawn");
    types.add<account_closed>("account.closed");
    types.add<account_state>("account.state");
  }

  static effect handle(const state& s, const command& cmd) {
    return std::visit([&s](const auto& c) { return on(s, c); }, cmd);
  }

  static state apply(state s, const event& ev) {
    std::visit([&s](const auto& e) { apply_to(s, e); }, ev);
    return s;
  }

 private:
  static reply balance_of(const state& s) { return reply{s.balance}; }

  static effect on(const state& s, const open_account& c) {
    if (s.exists)
      return effect::reject(
          make_error(account_errc::already_exists, "account exists"));
    return effect::persist(account_opened{c.owner}, balance_of);
  }

  static effect on(const state& s, const deposit& c) {
    if (auto err = check(s, c.amount)) return effect::reject(std::move(err));
    return effect::persist(money_deposited{c.amount}, balance_of);
  }

  static effect on(const state& s, const withdraw& c) {
    if (auto err = check(s, c.amount)) return effect::reject(std::move(err));
    if (s.balance < c.amount)
      return effect::reject(make_error(account_errc::insufficient_funds,
                                       "balance " + std::to_string(s.balance) +
                                           " is below " +
                                           std::to_string(c.amount)));
    return effect::persist(money_withdrawn{c.amount}, balance_of);
  }

  static effect on(const state& s, const close_account&) {
    if (auto err = check(s, 1)) return effect::reject(std::move(err));
    return effect::persist(account_closed{"closed by owner"}, balance_of);
  }

  static caf::error check(const state& s, int64_t amount) {
    if (!s.exists)
      return make_error(account_errc::unknown_account, "no such account");
    if (!s.open)
      return make_error(account_errc::account_closed, "account is closed");
    if (amount <= 0)
      return make_error(account_errc::invalid_amount,
                        "amounts are positive integers");
    return {};
  }

  static void apply_to(state& s, const account_opened& e) {
    s.exists = true;
    s.open = true;
    s.owner = e.owner;
  }
  static void apply_to(state& s, const money_deposited& e) {
    s.balance += e.amount;
  }
  static void apply_to(state& s, const money_withdrawn& e) {
    s.balance -= e.amount;
  }
  static void apply_to(state& s, const account_closed&) { s.open = false; }
};

}  // namespace bank
