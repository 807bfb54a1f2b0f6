#pragma once

// A client of etcd 3.4 (Debian's etcd-server) for the replicated cluster:
// keys and values, compare-and-swap transactions on revisions, leases, and
// waiting for a key's deletion. It speaks etcd's JSON gateway (the v3 API
// as HTTP/1.1 + JSON on the client port) over Boost.Beast; why the gateway
// and not gRPC is in docs/coordination.md.
//
// Every call blocks its thread for at most `request_timeout` per endpoint
// tried, so callers are coordination threads, never actors' handlers.
// Calls are thread-safe (one connection, used by one call at a time).

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

namespace mnemo::runtime::coordination {

/// Where and how to reach etcd.
struct etcd_settings {
  /// Client URLs' host:port, e.g. "127.0.0.1:2379"; tried in order.
  std::vector<std::string> endpoints;
  /// Time for one request to one endpoint. Default: 2 s.
  std::chrono::milliseconds request_timeout{2000};
};

/// A key as etcd stores it.
struct etcd_kv {
  std::string key;
  std::string value;
  /// Revision of the key's creation: a leader key's is its epoch.
  int64_t create_revision = 0;
  /// Revision of its last change: compare-and-swap compares this.
  int64_t mod_revision = 0;
  /// Changes since its creation (1 after the create).
  int64_t version = 0;
  /// The lease it is bound to, or 0.
  int64_t lease = 0;
};

/// What a conditional write found.
struct etcd_txn_result {
  /// Whether the condition held and the write happened.
  bool succeeded = false;
  /// The store's revision after the transaction.
  int64_t revision = 0;
  /// The key after the write (succeeded), or as it was (not succeeded;
  /// empty `key` when it did not exist).
  etcd_kv kv;
};

/// One comparison of a transaction (`etcd_client::txn`): the key's create
/// revision, mod revision, version or value compared with the one given.
/// A key that does not exist has revisions and version 0 and no value.
struct etcd_compare {
  enum class field { create_revision, mod_revision, version, value };
  enum class relation { equal, not_equal, greater, less };
  std::string key;
  field target = field::mod_revision;
  relation is = relation::equal;
  /// Compared with the create or mod revision or the version.
  int64_t number = 0;
  /// Compared with the value (`field::value`).
  std::string value;

  /// The key does not exist.
  static etcd_compare absent(std::string key);
  /// The key was last changed at `mod_revision` (compare and swap).
  static etcd_compare changed_at(std::string key, int64_t mod_revision);
  /// The key was created at `create_revision` (the same term).
  static etcd_compare created_at(std::string key, int64_t create_revision);
  /// The key holds `value`.
  static etcd_compare holds(std::string key, std::string value);
};

/// One operation of a transaction's branch.
struct etcd_op {
  enum class kind { put, erase, erase_prefix, get, get_prefix };
  kind what = kind::get;
  std::string key;
  std::string value;  // put
  int64_t lease = 0;  // put: 0, none

  static etcd_op put(std::string key, std::string value, int64_t lease = 0);
  static etcd_op erase(std::string key);
  /// Deletes every key that starts with `prefix`.
  static etcd_op erase_prefix(std::string prefix);
  static etcd_op get(std::string key);
  /// Reads every key that starts with `prefix`, oldest first.
  static etcd_op get_prefix(std::string prefix);
};

/// What a transaction did.
struct etcd_txn_outcome {
  /// Whether every comparison held (the success branch ran).
  bool succeeded = false;
  /// The store's revision after the transaction.
  int64_t revision = 0;
  /// One per operation of the branch that ran, in order: the keys a get
  /// read (empty for other operations)...
  std::vector<std::vector<etcd_kv>> read;
  /// ...and how many keys an erase deleted (0 for other operations).
  std::vector<int64_t> deleted;
};

/// A granted lease.
struct etcd_lease {
  int64_t id = 0;
  std::chrono::seconds ttl{0};
};

class etcd_client {
 public:
  /// Connects to the first endpoint that answers etcd's `/version`.
  /// Errors: `invalid_argument` (no endpoints, or one that is not
  /// host:port), `owner_unavailable` (no endpoint answered; the message
  /// names each endpoint and why).
  static caf::expected<std::unique_ptr<etcd_client>> connect(
      etcd_settings settings);

  ~etcd_client();
  etcd_client(const etcd_client&) = delete;
  etcd_client& operator=(const etcd_client&) = delete;

  /// The key, or nothing if it does not exist.
  caf::expected<std::optional<etcd_kv>> get(const std::string& key);

  /// Keys starting with `prefix`, in creation order (oldest first), at
  /// most `limit` (0: all). With `max_create_revision` > 0, only keys
  /// created at or before it.
  caf::expected<std::vector<etcd_kv>> get_prefix(
      const std::string& prefix, int64_t limit = 0,
      int64_t max_create_revision = 0);

  /// The store's revision, in one small request (a `count_only` range over
  /// `prefix`: no key comes back). Every write raises it, a lease's expiry
  /// included, so keys read at an unchanged revision are still current.
  caf::expected<int64_t> revision(const std::string& prefix);

  /// Writes the key unconditionally; returns the new revision.
  caf::expected<int64_t> put(const std::string& key, const std::string& value,
                             int64_t lease = 0);

  /// Creates the key if it does not exist (bound to `lease` if not 0);
  /// otherwise leaves it and returns it as it is.
  caf::expected<etcd_txn_result> create(const std::string& key,
                                        const std::string& value,
                                        int64_t lease = 0);

  /// Replaces the key if its mod revision is still `mod_revision` (compare
  /// and swap); otherwise returns it as it is (empty if deleted).
  caf::expected<etcd_txn_result> replace(const std::string& key,
                                         const std::string& value,
                                         int64_t mod_revision,
                                         int64_t lease = 0);

  /// Deletes the key if its create revision is `create_revision` (0: in
  /// any case); returns whether a key was deleted.
  caf::expected<bool> erase(const std::string& key,
                            int64_t create_revision = 0);

  /// Runs `success` if every comparison of `compare` holds, `failure`
  /// otherwise, atomically (etcd's `Txn`: one revision, nothing else in
  /// between). An empty `compare` always succeeds. Errors: as every call,
  /// and `invalid_argument` (or `not_found`, e.g. a put with an expired
  /// lease) with etcd's message for a transaction etcd refuses (e.g. an
  /// operation without a key, or two writes of one key).
  ///
  /// Like every call, a transaction whose answer was lost is sent again
  /// (to the next endpoint), and the first copy may have been applied: a
  /// compare-and-swap may then report `succeeded == false` because of its
  /// own earlier write. Callers read the keys again (a failure branch that
  /// reads them helps) and compare with what they meant to write.
  caf::expected<etcd_txn_outcome> txn(const std::vector<etcd_compare>& compare,
                                      const std::vector<etcd_op>& success,
                                      const std::vector<etcd_op>& failure = {});

  /// Grants a lease of `ttl` (etcd may raise it to its minimum).
  caf::expected<etcd_lease> grant(std::chrono::seconds ttl);

  /// Renews the lease; returns its new TTL. Error `not_found` once it has
  /// expired or was revoked (its keys are gone).
  caf::expected<std::chrono::seconds> keep_alive(int64_t lease);

  /// Revokes the lease, deleting its keys.
  caf::error revoke(int64_t lease);

  /// Waits until `key` is deleted after revision `after` (a deletion at a
  /// later revision), at most `timeout`; returns whether it was. Uses a
  /// watch on its own connection.
  caf::expected<bool> wait_deleted(const std::string& key, int64_t after,
                                   std::chrono::milliseconds timeout);

  /// The endpoint in use, host:port.
  const std::string& endpoint() const noexcept;

  struct impl;

 private:
  explicit etcd_client(std::unique_ptr<impl> ptr);
  std::unique_ptr<impl> impl_;
};

/// One leadership won with `campaign`.
struct etcd_leadership {
  /// The leader key: `prefix` + "/" + the lease id in hex.
  std::string key;
  /// The key's create revision: the fencing token of this term. A later
  /// leader of the same prefix always has a greater one.
  int64_t epoch = 0;
  int64_t lease = 0;
};

/// etcd's election recipe (clientv3/concurrency): each candidate creates
/// `prefix/<lease>` bound to its lease; the candidate whose key has the
/// smallest create revision leads, the others wait for the deletion of the
/// key created just before theirs. Returns once this candidate leads, or
/// `caf::sec::request_timeout` after `timeout` (its key stays, keeping its
/// place in the queue, until its lease ends or `resign`). Errors of the
/// client pass through (`owner_unavailable`: etcd cannot be reached).
caf::expected<etcd_leadership> campaign(etcd_client& client,
                                        const std::string& prefix,
                                        int64_t lease, const std::string& value,
                                        std::chrono::milliseconds timeout);

/// The current leader's key of `prefix`, or nothing.
caf::expected<std::optional<etcd_kv>> leader(etcd_client& client,
                                             const std::string& prefix);

/// Gives up the leadership (deletes the key if it is still this term's).
caf::error resign(etcd_client& client, const etcd_leadership& term);

}  // namespace mnemo::runtime::coordination
