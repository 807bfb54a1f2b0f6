// Works around two flaws of CAF 0.17's BASP (libcaf_io) that let anyone who
// reaches a plain-TCP cluster port take the members' links apart
// (tests/examples/bank_cluster_garbage_test.cpp):
//
// 1. `basp::valid(header)` checks the operation's fields but not the
//    payload length. A header of random bytes that passes (about 1 in 300)
//    announces up to 4 GiB, and the single multiplexer thread resizes and
//    zero-fills its read buffer to that size before it reads on. A few
//    such connections stalled the thread for seconds: heartbeats stopped,
//    the members dropped each other's links and took up to 30 s to
//    reconnect. With TLS the handshake (a client certificate of the
//    cluster CA) comes first, so garbage never reaches BASP there.
//
// 2. A client handshake with the "select this connection" flag makes
//    `routing_table::select_alternative(hdl, nid)` route every message for
//    node `nid` over connection `hdl`, whether or not `hdl` ever said it
//    was `nid` (CAF asserts it only in debug builds). One forged header
//    with a member's node id (sent in clear in every server handshake)
//    redirected that member's traffic to the forger.
//
// The definitions below take precedence over libcaf_io's for the whole
// process (libcaf_io calls both through its PLT, and the linker exports an
// executable's definition of a symbol a shared library defines too). Each
// checks and then calls libcaf_io's own function. `cluster::start`
// verifies that they are the ones in use (`basp_guard_active`) and refuses
// to start a plain-TCP cluster otherwise.

#include <dlfcn.h>

#include <atomic>

#include <caf/io/basp/header.hpp>
#include <caf/io/basp/routing_table.hpp>

#include "interpose.hpp"

namespace mnemo::runtime::detail {

namespace {

// Default until a cluster starts: CAF's own defaults for anything else.
std::atomic<uint32_t> max_payload{uint32_t{16} << 20};
std::atomic<uint64_t> refused_headers{0};
std::atomic<uint64_t> refused_selections{0};
// Set while `basp_guard_active` probes the guard: not counted.
thread_local bool probing = false;
thread_local bool probe_refused = false;

template <class Fn>
Fn next(const char* name) {
  return next_definition<Fn>(name, "libcaf_io");
}

constexpr const char* valid_name = "_ZN3caf2io4basp5validERKNS1_6headerE";
constexpr const char* select_name =
    "_ZN3caf2io4basp13routing_table18select_alternativeERKNS0_17connection_"
    "handleERKNS_7node_idE";

}  // namespace

void limit_basp_payload(uint32_t bytes) noexcept {
  // Several clusters in one process (tests): the largest limit wins, so
  // none of them refuses what its own settings allow.
  auto cur = max_payload.load();
  while (bytes > cur && !max_payload.compare_exchange_weak(cur, bytes)) {
  }
}

uint64_t basp_headers_refused() noexcept {
  return refused_headers.load();
}

uint64_t basp_selections_refused() noexcept {
  return refused_selections.load();
}

bool basp_guard_active() noexcept {
  // What libcaf_io's PLT resolves to is what the global lookup finds.
  auto* valid_fn = ::dlsym(RTLD_DEFAULT, valid_name);
  auto* select_fn = ::dlsym(RTLD_DEFAULT, select_name);
  using valid_t = bool (*)(const caf::io::basp::header&);
  auto* own_valid =
      reinterpret_cast<void*>(static_cast<valid_t>(&caf::io::basp::valid));
  if (valid_fn != own_valid || select_fn == nullptr) return false;
  // The selection guard lives in this file too; check it behaves as ours.
  probing = true;
  probe_refused = false;
  caf::io::basp::routing_table tbl{nullptr};
  tbl.select_alternative(caf::io::connection_handle::from_int(1),
                         caf::node_id{});
  probing = false;
  return probe_refused;
}

}  // namespace mnemo::runtime::detail

namespace caf::io::basp {

bool valid(const header& hdr) {
  static auto real = mnemo::runtime::detail::next<bool (*)(const header&)>(
      mnemo::runtime::detail::valid_name);
  // A refused header closes its connection (malformed_basp_message).
  if (hdr.payload_len > mnemo::runtime::detail::max_payload.load() ||
      !real(hdr)) {
    mnemo::runtime::detail::refused_headers.fetch_add(1);
    return false;
  }
  return true;
}

void routing_table::select_alternative(const connection_handle& hdl,
                                       const node_id& nid) {
  using fn = void (*)(routing_table*, const connection_handle&, const node_id&);
  static auto real =
      mnemo::runtime::detail::next<fn>(mnemo::runtime::detail::select_name);
  // Only a connection that already handshook as `nid` may carry its
  // traffic; anything else is a forged handshake (or a bug) and is ignored.
  if (nid == none || lookup_direct(hdl) != nid) {
    if (mnemo::runtime::detail::probing)
      mnemo::runtime::detail::probe_refused = true;
    else
      mnemo::runtime::detail::refused_selections.fetch_add(1);
    return;
  }
  real(this, hdl, nid);
}

}  // namespace caf::io::basp
