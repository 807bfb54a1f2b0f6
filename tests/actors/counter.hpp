#pragma once

// A tiny counter aggregate for tests: counts recoveries and throws from its
// command handler for negative amounts.

#include <cstdint>
#include <stdexcept>
#include <variant>

#include "mnemo/actors/aggregate.hpp"

namespace counter_model {

namespace persistence = mnemo::persistence;
namespace actors = mnemo::actors;

struct add {
  int64_t n = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, add& x) {
  return f(caf::meta::type_name("add"), x.n);
}

struct added {
  int64_t n = 0;
  MSGPACK_DEFINE_MAP(n)
};

struct count {
  int64_t total = 0;
  MSGPACK_DEFINE_MAP(total)
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, count& x) {
  return f(caf::meta::type_name("count"), x.total);
}

/// Counts recoveries; throws from `handle` for negative amounts.
struct counter {
  using state = count;
  using command = std::variant<add>;
  using event = std::variant<added>;
  using reply = count;
  static constexpr const char* type_name = "counter";
  static inline int recoveries = 0;
  static inline int64_t recovered_total = -1;

  static void register_types(persistence::event_registry& types) {
    types.add<added>("counter.added");
    types.add<count>("counter.state");
  }
  static actors::effect<counter> handle(const state&, const command& cmd) {
    auto n = std::get<add>(cmd).n;
    if (n < 0) throw std::invalid_argument("negative amount");
    return actors::effect<counter>::persist(added{n},
                                            [](const state& s) { return s; });
  }
  static state apply(state s, const event& ev) {
    s.total += std::get<added>(ev).n;
    return s;
  }
  static void on_recovered(const state& s) {
    ++recoveries;
    recovered_total = s.total;
  }
};

}  // namespace counter_model
