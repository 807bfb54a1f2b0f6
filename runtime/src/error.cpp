#include "mnemo/runtime/error.hpp"

#include <map>
#include <mutex>

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace mnemo::runtime {

namespace {

constexpr auto rt_atom = caf::atom("mnemo_rt");
constexpr auto pers_atom = caf::atom("mnemo_pers");

std::mutex names_mtx;
std::map<caf::atom_value, std::vector<std::string>>& error_names() {
  static std::map<caf::atom_value, std::vector<std::string>> names;
  return names;
}

std::string context_text(const caf::message& ctx) {
  if (ctx.size() == 1 && ctx.match_element<std::string>(0))
    return ctx.get_as<std::string>(0);
  return ctx.empty() ? std::string{} : caf::to_string(ctx);
}

std::string render(uint8_t code, caf::atom_value category,
                   const caf::message& ctx) {
  std::string name;
  if (category == rt_atom)
    name = std::string{"mnemo_rt:"} + to_string(static_cast<errc>(code));
  else
    name = std::string{"mnemo_pers:"} +
           persistence::to_string(static_cast<persistence::errc>(code));
  auto text = context_text(ctx);
  return text.empty() ? name : name + ": " + text;
}

}  // namespace

const char* to_string(errc x) noexcept {
  switch (x) {
    case errc::none:
      return "none";
    case errc::stash_overflow:
      return "stash_overflow";
    case errc::entity_stopped:
      return "entity_stopped";
    case errc::handler_failed:
      return "handler_failed";
    case errc::invalid_argument:
      return "invalid_argument";
    case errc::restart_limit:
      return "restart_limit";
    case errc::not_found:
      return "not_found";
    case errc::owner_unavailable:
      return "owner_unavailable";
    case errc::join_refused:
      return "join_refused";
    case errc::owner_lost:
      return "owner_lost";
    case errc::conflict:
      return "conflict";
  }
  return "unknown";
}

caf::error make_error(errc code, std::string message) {
  return caf::error{static_cast<uint8_t>(code), rt_atom,
                    caf::make_message(std::move(message))};
}

caf::error make_error(errc code) {
  return caf::error{static_cast<uint8_t>(code), rt_atom};
}

caf::error to_caf_error(const persistence::error& err) {
  if (!err) return caf::error{};
  return caf::error{static_cast<uint8_t>(err.code()), pers_atom,
                    caf::make_message(err.message())};
}

// An empty caf::error has no category to ask (CAF 0.17 dereferences it).
bool is(const caf::error& err, persistence::errc code) noexcept {
  return err && err.category() == pers_atom &&
         err.code() == static_cast<uint8_t>(code);
}

bool is(const caf::error& err, errc code) noexcept {
  return err && err.category() == rt_atom &&
         err.code() == static_cast<uint8_t>(code);
}

bool means_owner_lost(const caf::error& err) noexcept {
  if (!err) return false;
  if (is(err, errc::owner_lost) || is(err, errc::owner_unavailable))
    return true;
  if (err.category() != caf::atom("system")) return false;
  switch (static_cast<caf::sec>(err.code())) {
    // The actor or its node went away with the request in flight.
    case caf::sec::request_receiver_down:
    case caf::sec::no_route_to_receiving_node:
    case caf::sec::cannot_forward_to_invalid_actor:
    // The connection died or could not be made.
    case caf::sec::disconnect_during_handshake:
    case caf::sec::cannot_connect_to_node:
    case caf::sec::network_syscall_failed:
    case caf::sec::socket_invalid:
    case caf::sec::socket_disconnected:
    case caf::sec::socket_operation_failed:
    case caf::sec::end_of_stream:
    case caf::sec::connection_timeout:
    case caf::sec::remote_lookup_failed:
    case caf::sec::remote_linking_failed:
    case caf::sec::malformed_basp_message:
    case caf::sec::redundant_connection:
      return true;
    default:
      return false;
  }
}

caf::error as_owner_lost(caf::error err, const std::string& what) {
  // Only CAF's own errors are translated; mnemo's pass as they are.
  if (!err || err.category() != caf::atom("system") || !means_owner_lost(err))
    return err;
  return make_error(errc::owner_lost,
                    what + " lost its owner (" + describe(err) +
                        "); it may or may not have been applied: retry with "
                        "the same command id once the member is back");
}

void register_error_names(caf::atom_value category,
                          std::vector<std::string> names) {
  std::lock_guard<std::mutex> guard{names_mtx};
  error_names()[category] = std::move(names);
}

std::string describe(const caf::error& err) {
  if (!err) return "none";
  if (err.category() == rt_atom || err.category() == pers_atom)
    return render(err.code(), err.category(), err.context());
  auto& ctx = err.context();
  if (!(ctx.empty() || (ctx.size() == 1 && ctx.match_element<std::string>(0))))
    return caf::to_string(err);
  auto name = caf::to_string(err.category()) + ":" + std::to_string(err.code());
  // CAF's own errors: "system:request_receiver_down", never "system:3".
  if (err.category() == caf::atom("system"))
    name = "system:" + caf::to_string(static_cast<caf::sec>(err.code()));
  {
    std::lock_guard<std::mutex> guard{names_mtx};
    auto i = error_names().find(err.category());
    if (i != error_names().end() && err.code() < i->second.size())
      name = caf::to_string(err.category()) + ":" + i->second[err.code()];
  }
  auto text = context_text(ctx);
  return text.empty() ? name : name + ": " + text;
}

void add_error_categories(caf::actor_system_config& cfg) {
  cfg.add_error_category(rt_atom, render);
  cfg.add_error_category(pers_atom, render);
}

}  // namespace mnemo::runtime
