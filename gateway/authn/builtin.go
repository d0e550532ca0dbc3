package authn

import (
	"context"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/protogate/protogate/gateway"
)

// HashAlgorithm is EMQX's password_hash_algorithm: how the built-in
// database stores passwords. The zero value is EMQX's default, sha256 with
// a prefix salt.
type HashAlgorithm struct {
	// Name is plain, md5, sha, sha256, sha512, bcrypt or pbkdf2.
	Name string
	// SaltPosition is prefix (the default), suffix or disable, for plain
	// and the digests.
	SaltPosition string
	// MacFun is pbkdf2's hash: sha, sha224, sha256, sha384 or sha512.
	MacFun string
	// Iterations is pbkdf2's iteration count (required for pbkdf2).
	Iterations int
	// DKLength is pbkdf2's derived key length in bytes; 0 is the hash's
	// size.
	DKLength int
	// SaltRounds is bcrypt's cost for passwords hashed here (5 to 10,
	// default 10), as EMQX clamps it.
	SaltRounds int
}

func (a HashAlgorithm) name() string {
	if a.Name == "" {
		return "sha256"
	}
	return a.Name
}

func (a HashAlgorithm) salting() string {
	if a.SaltPosition == "" {
		return "prefix"
	}
	return a.SaltPosition
}

func digestOf(name string) func() hash.Hash {
	switch name {
	case "md5":
		return md5.New
	case "sha":
		return sha1.New
	case "sha224":
		return sha256.New224
	case "sha256":
		return sha256.New
	case "sha384":
		return sha512.New384
	case "sha512":
		return sha512.New
	}
	return nil
}

// Validate reports a setting EMQX would refuse.
func (a HashAlgorithm) Validate() error {
	switch n := a.name(); n {
	case "plain", "md5", "sha", "sha256", "sha512":
		switch a.salting() {
		case "prefix", "suffix", "disable":
		default:
			return fmt.Errorf("authn: salt_position %q: want prefix, suffix or disable", a.SaltPosition)
		}
	case "bcrypt":
		if a.SaltRounds != 0 && (a.SaltRounds < 5 || a.SaltRounds > 10) {
			return fmt.Errorf("authn: salt_rounds %d: want 5 to 10", a.SaltRounds)
		}
	case "pbkdf2":
		if digestOf(a.MacFun) == nil || a.MacFun == "md5" {
			return fmt.Errorf("authn: mac_fun %q: want sha, sha224, sha256, sha384 or sha512", a.MacFun)
		}
		if a.Iterations <= 0 {
			return errors.New("authn: pbkdf2 needs iterations (1 or more)")
		}
		if a.DKLength < 0 {
			return fmt.Errorf("authn: dk_length %d: want 0 (the hash's size) or more", a.DKLength)
		}
	default:
		return fmt.Errorf("authn: unknown password hash algorithm %q (want plain, md5, sha, sha256, sha512, bcrypt or pbkdf2)", a.Name)
	}
	return nil
}

// Hash returns the stored form of password with salt: lowercase hex for
// the digests and pbkdf2, the password itself for plain, a modular crypt
// string for bcrypt (which makes its own salt and ignores salt).
func (a HashAlgorithm) Hash(password, salt string) (string, error) {
	switch n := a.name(); n {
	case "plain":
		return password, nil
	case "bcrypt":
		cost := a.SaltRounds
		if cost == 0 {
			cost = 10
		}
		b, err := bcrypt.GenerateFromPassword([]byte(password), cost)
		return string(b), err
	case "pbkdf2":
		h := digestOf(a.MacFun)
		if h == nil {
			return "", fmt.Errorf("authn: mac_fun %q", a.MacFun)
		}
		n := a.DKLength
		if n == 0 {
			n = h().Size()
		}
		k, err := pbkdf2.Key(h, password, []byte(salt), a.Iterations, n)
		if err != nil {
			return "", fmt.Errorf("authn: pbkdf2: %w", err)
		}
		return hex.EncodeToString(k), nil
	default:
		h := digestOf(n)
		if h == nil {
			return "", fmt.Errorf("authn: unknown password hash algorithm %q", n)
		}
		d := h()
		switch a.salting() {
		case "prefix":
			io.WriteString(d, salt+password)
		case "suffix":
			io.WriteString(d, password+salt)
		default:
			io.WriteString(d, password)
		}
		return hex.EncodeToString(d.Sum(nil)), nil
	}
}

// Check reports whether password, with salt, hashes to stored, in
// constant time for a given stored length. Hex digests compare without
// regard to case, as EMQX's; plain passwords compare exactly.
func (a HashAlgorithm) Check(password, stored, salt string) bool {
	if a.name() == "bcrypt" {
		// bcrypt reads 72 bytes of a password at most: a longer one would
		// match every password it starts with. No bcrypt hash made here
		// is of a longer password (GenerateFromPassword refuses them).
		if len(password) > 72 {
			return false
		}
		return bcrypt.CompareHashAndPassword([]byte(stored), []byte(password)) == nil
	}
	got, err := a.Hash(password, salt)
	if err != nil || len(got) != len(stored) {
		return false
	}
	if a.name() == "plain" {
		return subtle.ConstantTimeCompare([]byte(got), []byte(stored)) == 1
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(strings.ToLower(stored))) == 1
}

// User is one entry of the built-in database.
type User struct {
	ID           string // a username or a client id, as the database's user_id_type says
	PasswordHash string // as HashAlgorithm.Hash stores it
	Salt         string
	Superuser    bool
	// algo overrides the database's algorithm for this user: the static
	// users of ParsePassword (plain text or an unsalted sha256).
	algo *HashAlgorithm
}

// BuiltinDB is EMQX's built-in database authenticator: users with hashed
// passwords, matched on username or client id. A client that is not in it,
// or gives no password, is ignored (the next authenticator decides); a
// wrong password denies. It is safe for concurrent use.
type BuiltinDB struct {
	byClientID bool
	algo       HashAlgorithm
	users      map[string]User
}

var _ Source = (*BuiltinDB)(nil)

// NewBuiltinDB returns a database of users, matched on the client id when
// byClientID is set and on the username otherwise.
func NewBuiltinDB(byClientID bool, algo HashAlgorithm, users []User) (*BuiltinDB, error) {
	if err := algo.Validate(); err != nil {
		return nil, err
	}
	db := &BuiltinDB{byClientID: byClientID, algo: algo, users: make(map[string]User, len(users))}
	for i, u := range users {
		if u.ID == "" {
			return nil, fmt.Errorf("authn: user %d: empty user_id", i+1)
		}
		if _, dup := db.users[u.ID]; dup {
			return nil, fmt.Errorf("authn: user %q twice", u.ID)
		}
		db.users[u.ID] = u
	}
	return db, nil
}

// NewStatic returns a database of users given as the authentication.users
// map of the configuration: each password in plain text, or "sha256:" and
// the hex digest of it (see ParsePassword).
func NewStatic(users map[string]string, byClientID bool) (*BuiltinDB, error) {
	list := make([]User, 0, len(users))
	for id, stored := range users {
		pw, err := ParsePassword(stored)
		if err != nil {
			return nil, fmt.Errorf("%w (user %q)", err, id)
		}
		u := User{ID: id}
		if pw.hashed {
			u.PasswordHash, u.algo = hex.EncodeToString(pw.value), &HashAlgorithm{Name: "sha256", SaltPosition: "disable"}
		} else {
			u.PasswordHash, u.algo = string(pw.value), &HashAlgorithm{Name: "plain", SaltPosition: "disable"}
		}
		list = append(list, u)
	}
	return NewBuiltinDB(byClientID, HashAlgorithm{}, list)
}

// Name implements Source.
func (*BuiltinDB) Name() string { return "built_in_database" }

// Len returns the number of users.
func (db *BuiltinDB) Len() int { return len(db.users) }

// Check implements Source.
func (db *BuiltinDB) Check(_ context.Context, req *gateway.AuthRequest) (Result, *gateway.Identity, error) {
	id := req.Client.Username
	if db.byClientID {
		id = req.Client.ClientID
	}
	u, ok := db.users[id]
	if !ok || req.Password == "" {
		return Ignore, nil, nil
	}
	algo := db.algo
	if u.algo != nil {
		algo = *u.algo
	}
	if !algo.Check(req.Password, u.PasswordHash, u.Salt) {
		return Deny, nil, nil
	}
	return Allow, &gateway.Identity{Superuser: u.Superuser}, nil
}

// Authenticate makes a database a gateway.Authenticator on its own: a
// chain of one, legacy profile.
func (db *BuiltinDB) Authenticate(ctx context.Context, req *gateway.AuthRequest) (*gateway.Identity, error) {
	return NewChain(Legacy, nil, db).Authenticate(ctx, req)
}

// maxUsersFile bounds a users file.
const maxUsersFile = 64 << 20

// ReadUsers reads users in EMQX's export and bootstrap formats: a JSON
// array of objects, or CSV with a header line. Each user has user_id and
// either password_hash (with salt, as stored by algo) or password (in
// plain text, hashed here with a random salt), and optionally
// is_superuser. format is "json" or "csv".
func ReadUsers(r io.Reader, format string, algo HashAlgorithm) ([]User, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxUsersFile+1))
	if err != nil {
		return nil, fmt.Errorf("authn: users: %w", err)
	}
	if len(data) > maxUsersFile {
		return nil, fmt.Errorf("authn: users: over %d bytes", maxUsersFile)
	}
	var recs []map[string]string
	switch format {
	case "json":
		var raw []map[string]any
		if err := json.Unmarshal(data, &raw); err != nil {
			return nil, fmt.Errorf("authn: users: want a JSON array of objects: %w", err)
		}
		for i, o := range raw {
			rec := map[string]string{}
			for k, v := range o {
				switch v := v.(type) {
				case string:
					rec[k] = v
				case bool:
					rec[k] = strconv.FormatBool(v)
				case nil:
				default:
					return nil, fmt.Errorf("authn: users: entry %d: %s is not a string or a boolean", i+1, k)
				}
			}
			recs = append(recs, rec)
		}
	case "csv":
		cr := csv.NewReader(strings.NewReader(string(data)))
		cr.FieldsPerRecord = -1
		rows, err := cr.ReadAll()
		if err != nil {
			return nil, fmt.Errorf("authn: users: %w", err)
		}
		if len(rows) == 0 {
			return nil, nil
		}
		header := rows[0]
		for i, row := range rows[1:] {
			if len(row) != len(header) {
				return nil, fmt.Errorf("authn: users: line %d: %d fields, the header has %d", i+2, len(row), len(header))
			}
			rec := map[string]string{}
			for j, k := range header {
				rec[strings.TrimSpace(k)] = row[j]
			}
			recs = append(recs, rec)
		}
	default:
		return nil, fmt.Errorf("authn: users: unknown format %q (want json or csv)", format)
	}
	users := make([]User, 0, len(recs))
	for i, rec := range recs {
		u, err := userOf(rec, algo)
		if err != nil {
			return nil, fmt.Errorf("authn: users: entry %d: %w", i+1, err)
		}
		users = append(users, u)
	}
	return users, nil
}

func userOf(rec map[string]string, algo HashAlgorithm) (User, error) {
	u := User{ID: rec["user_id"], Salt: rec["salt"]}
	if u.ID == "" {
		return u, errors.New("no user_id")
	}
	switch s := strings.ToLower(rec["is_superuser"]); s {
	case "", "false", "0":
	case "true", "1":
		u.Superuser = true
	default:
		return u, fmt.Errorf("user %q: is_superuser %q is not true or false", u.ID, s)
	}
	if h := rec["password_hash"]; h != "" {
		u.PasswordHash = h
		return u, nil
	}
	pw := rec["password"]
	if pw == "" {
		return u, fmt.Errorf("user %q: neither password_hash nor password", u.ID)
	}
	return HashUser(u.ID, pw, u.Superuser, algo)
}

// HashUser returns a user whose password is stored as algo stores it, with
// a new random salt (32 hex digits, as EMQX makes) where algo salts.
func HashUser(id, password string, superuser bool, algo HashAlgorithm) (User, error) {
	u := User{ID: id, Superuser: superuser}
	if algo.name() == "pbkdf2" || algo.name() != "bcrypt" && algo.name() != "plain" && algo.salting() != "disable" {
		u.Salt = randomSalt()
	}
	h, err := algo.Hash(password, u.Salt)
	if err != nil {
		return u, err
	}
	u.PasswordHash = h
	return u, nil
}
