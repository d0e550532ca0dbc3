package authn

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

// Fuzzer-chosen settings of HashAlgorithm, valid and not.
var (
	fuzzNames    = []string{"", "plain", "md5", "sha", "sha256", "sha512", "bcrypt", "pbkdf2", "argon2", "SHA256"}
	fuzzSaltings = []string{"", "prefix", "suffix", "disable", "middle"}
	fuzzMacFuns  = []string{"sha", "sha224", "sha256", "sha384", "sha512", "md5", ""}
)

// FuzzHashAlgorithm checks the built-in database's password hashing,
// EMQX's password_hash_algorithm, on any setting, password and salt:
//
//   - Validate, Hash and Check never panic (Hash and Check on settings
//     Validate refuses, too; Check on any stored value);
//   - for a setting Validate accepts, Hash succeeds (bcrypt refuses
//     passwords over 72 bytes, as it must), and Check takes the password
//     it hashed with the same salt and refuses any other password;
//   - the digests and pbkdf2 are deterministic lowercase hex of the
//     expected length, and Check takes them in upper case too (EMQX
//     compares hex without regard to case).
//
// pbkdf2 iterations stay under 64 and bcrypt's cost at 5, so that one
// input takes milliseconds.
func FuzzHashAlgorithm(f *testing.F) {
	f.Add(uint8(4), uint8(1), uint8(0), uint8(0), uint8(0), "password", "salt", "")
	f.Add(uint8(4), uint8(2), uint8(0), uint8(0), uint8(0), "password", "salt", "7A37B85C8918EAC19A9089C0FA5A2AB4DCE3F90528DCDEEC108B23DDF3607B99")
	f.Add(uint8(1), uint8(3), uint8(0), uint8(0), uint8(0), "pw", "", "pw")
	f.Add(uint8(7), uint8(0), uint8(2), uint8(9), uint8(32), "password", "ATHENA.MIT.EDUraeburn", "")
	f.Add(uint8(7), uint8(0), uint8(5), uint8(1), uint8(0), "x", "y", "")
	f.Add(uint8(6), uint8(0), uint8(0), uint8(0), uint8(0), "hunter2", "", "$2b$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui")
	f.Add(uint8(6), uint8(0), uint8(0), uint8(0), uint8(0), strings.Repeat("p", 73), "", "")
	f.Add(uint8(8), uint8(4), uint8(6), uint8(0), uint8(0), "a", "b", "c")
	f.Fuzz(func(t *testing.T, name, salting, mac, iter, dk uint8, password, salt, stored string) {
		a := HashAlgorithm{
			Name:         fuzzNames[int(name)%len(fuzzNames)],
			SaltPosition: fuzzSaltings[int(salting)%len(fuzzSaltings)],
			MacFun:       fuzzMacFuns[int(mac)%len(fuzzMacFuns)],
			Iterations:   int(iter%64) - 1,
			DKLength:     int(dk%80) - 1,
			SaltRounds:   5,
		}
		bcryptCost, costErr := bcrypt.Cost([]byte(stored))
		if a.Name != "bcrypt" || costErr == nil && bcryptCost <= 5 {
			a.Check(password, stored, salt) // any stored value: no panic
		}
		if err := a.Validate(); err != nil {
			a.Hash(password, salt) // no panic either
			return
		}
		h, err := a.Hash(password, salt)
		if a.Name == "bcrypt" && len(password) > 72 {
			if err == nil {
				t.Fatal("bcrypt hashed a password over 72 bytes")
			}
			return
		}
		if err != nil {
			t.Fatalf("%+v validates but Hash fails: %v", a, err)
		}
		if !a.Check(password, h, salt) {
			t.Fatalf("%+v: Check refuses the password it hashed as %q", a, h)
		}
		// Other passwords: one byte longer, and the first byte changed.
		// (Not one NUL byte longer: pbkdf2's HMAC pads its key with NULs,
		// so "pw" and "pw\x00" are the same key, in EMQX too.)
		others := []string{password + "x"}
		if password != "" {
			others = append(others, string([]byte{password[0] ^ 1})+password[1:])
		}
		for _, o := range others {
			// A pbkdf2 key of a few bytes collides by design (dk_length 1
			// is 1 in 256): only a key of 8 bytes or more must tell
			// passwords apart.
			if a.Name == "pbkdf2" && len(h) < 16 {
				break
			}
			if a.Check(o, h, salt) {
				t.Fatalf("%+v: Check takes %q for the hash %q of %q", a, o, h, password)
			}
		}
		if a.Name == "plain" {
			if h != password {
				t.Fatalf("plain stores %q for %q", h, password)
			}
			return
		}
		if a.Name == "bcrypt" {
			return
		}
		size := 0
		switch {
		case a.Name == "pbkdf2" && a.DKLength > 0:
			size = a.DKLength
		case a.Name == "pbkdf2":
			size = digestOf(a.MacFun)().Size()
		default:
			size = digestOf(a.name())().Size()
		}
		if len(h) != 2*size || strings.ToLower(h) != h {
			t.Fatalf("%+v: hash %q, want %d lowercase hex digits", a, h, 2*size)
		}
		if again, _ := a.Hash(password, salt); again != h {
			t.Fatalf("%+v: two hashes %q and %q", a, h, again)
		}
		if !a.Check(password, strings.ToUpper(h), salt) {
			t.Fatalf("%+v: Check refuses the hash in upper case", a)
		}
	})
}

// FuzzParsePassword checks the stored passwords of the configuration's
// users map:
//
//   - an empty value and "sha256:" (in any case) not followed by exactly
//     64 hex digits are refused, anything else accepted;
//   - errors never quote the value (their text is one of two constants);
//   - a plain password matches itself only, a digest the passwords whose
//     SHA-256 it is; "sha256:" and the digest of a password always match
//     that password.
func FuzzParsePassword(f *testing.F) {
	for _, s := range [][2]string{
		{"secret", "secret"}, {"secret", "Secret"}, {"", ""},
		{"sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b", "secret"},
		{"SHA256:2BB80D537B1DA3E38BD30361AA855686BDE0EACD7162FEF6A25FE97BF527A25B", "secret"},
		{"sha256:2bb8", "secret"}, {"sha256:", ""}, {"sha256", "sha256"}, {"sha256:zz", "x"},
	} {
		f.Add(s[0], s[1])
	}
	_, errEmpty := ParsePassword("")
	_, errDigest := ParsePassword("sha256:")
	f.Fuzz(func(t *testing.T, stored, password string) {
		p, err := ParsePassword(stored)
		isDigest := len(stored) >= len(digestPrefix) && strings.EqualFold(stored[:len(digestPrefix)], digestPrefix)
		rest := ""
		if isDigest {
			rest = stored[len(digestPrefix):]
		}
		validDigest := len(rest) == 64 && strings.Trim(strings.ToLower(rest), "0123456789abcdef") == ""
		if wantErr := stored == "" || isDigest && !validDigest; (err != nil) != wantErr {
			t.Fatalf("ParsePassword(%q): %v", stored, err)
		}
		if err != nil {
			if msg := err.Error(); msg != errEmpty.Error() && msg != errDigest.Error() {
				t.Fatalf("ParsePassword(%q): error %q", stored, msg)
			}
			if p.Match(password) || p.Match("") {
				t.Fatal("a refused password matches")
			}
		} else {
			sum := sha256.Sum256([]byte(password))
			want := password == stored
			if isDigest {
				want = hex.EncodeToString(sum[:]) == strings.ToLower(rest)
			}
			if p.Match(password) != want {
				t.Fatalf("ParsePassword(%q).Match(%q) = %v", stored, password, !want)
			}
		}
		sum := sha256.Sum256([]byte(password))
		if d, err := ParsePassword(digestPrefix + hex.EncodeToString(sum[:])); err != nil || !d.Match(password) {
			t.Fatalf("the digest of %q: %v", password, err)
		}
	})
}

// fuzzAlgo is the algorithm of FuzzReadUsers: a salted digest, so that
// users given with a plain password are hashed fast.
var fuzzAlgo = HashAlgorithm{Name: "sha256", SaltPosition: "suffix"}

// FuzzReadUsers checks the import of EMQX's user exports, JSON and CSV:
//
//   - it never panics; errors say "authn: users";
//   - every user read has an id and a stored hash, and a user given with a
//     plain password checks with that password;
//   - what one format reads, written in the other, reads back the same
//     (except values CSV or JSON cannot carry as they are: a carriage
//     return in CSV, which encoding/csv reads as a newline, and invalid
//     UTF-8 in JSON);
//   - NewBuiltinDB takes the users unless an id repeats.
func FuzzReadUsers(f *testing.F) {
	for _, s := range []string{
		`[{"user_id":"alice","password_hash":"7a37b85c8918eac19a9089c0fa5a2ab4dce3f90528dcdeec108b23ddf3607b99","salt":"salt","is_superuser":true},
		  {"user_id":"bob","password":"hunter2","is_superuser":false}]`,
		`[{"user_id":"x","password":"p","is_superuser":"maybe"}]`,
		`[{"user_id":"x","password_hash":"h","is_superuser":1}]`,
		`[{"user_id":"x","password_hash":"h","salt":null,"extra":"y"}]`,
		`[{"user_id":"a","password":"p"},{"user_id":"a","password":"q"}]`,
		`[]`, `{}`, `null`, `[null]`,
	} {
		f.Add(false, []byte(s))
	}
	for _, s := range []string{
		"user_id,password_hash,salt,is_superuser\nalice,7a37b85c8918eac19a9089c0fa5a2ab4dce3f90528dcdeec108b23ddf3607b99,salt,true\n",
		"user_id,password,is_superuser\nbob,hunter2,false\n",
		" user_id , password \n\"a,b\",\"p\"\"q\"\n",
		"user_id,password\nx\n",
		"user_id,password_hash,salt\r\n\"multi\r\nline\",h,s\r\n",
		"",
		"user_id\n\"unterminated\n",
	} {
		f.Add(true, []byte(s))
	}
	f.Fuzz(func(t *testing.T, isCSV bool, data []byte) {
		format, other := "json", "csv"
		if isCSV {
			format, other = "csv", "json"
		}
		users, err := ReadUsers(bytes.NewReader(data), format, fuzzAlgo)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "authn: users") {
				t.Fatalf("ReadUsers: %v", err)
			}
			return
		}
		for i, u := range users {
			if u.ID == "" || u.PasswordHash == "" || u.algo != nil {
				t.Fatalf("user %d: %+v", i, u)
			}
		}
		checkPlainPasswords(t, format, data, users)

		ids := map[string]bool{}
		for _, u := range users {
			ids[u.ID] = true
		}
		if db, err := NewBuiltinDB(false, fuzzAlgo, users); (err == nil) != (len(ids) == len(users)) || err == nil && db.Len() != len(users) {
			t.Fatalf("NewBuiltinDB of %d users, %d ids: %v", len(users), len(ids), err)
		}

		for _, u := range users {
			for _, v := range []string{u.ID, u.PasswordHash, u.Salt} {
				if other == "csv" && strings.Contains(v, "\r") || other == "json" && !utf8.ValidString(v) {
					return
				}
			}
		}
		again, err := ReadUsers(bytes.NewReader(writeUsers(t, other, users)), other, fuzzAlgo)
		if err != nil {
			t.Fatalf("%s written as %s: %v", format, other, err)
		}
		if !slices.EqualFunc(users, again, func(a, b User) bool { return a == b }) {
			t.Fatalf("%s written as %s reads back\n%+v\nnot\n%+v", format, other, again, users)
		}
	})
}

// writeUsers writes users in EMQX's export format.
func writeUsers(t *testing.T, format string, users []User) []byte {
	var b bytes.Buffer
	if format == "json" {
		out := []map[string]any{}
		for _, u := range users {
			out = append(out, map[string]any{"user_id": u.ID, "password_hash": u.PasswordHash, "salt": u.Salt, "is_superuser": u.Superuser})
		}
		if err := json.NewEncoder(&b).Encode(out); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	w := csv.NewWriter(&b)
	w.Write([]string{"user_id", "password_hash", "salt", "is_superuser"})
	for _, u := range users {
		w.Write([]string{u.ID, u.PasswordHash, u.Salt, strconv.FormatBool(u.Superuser)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// checkPlainPasswords checks that the users data gives with a plain
// password (and no password_hash) check with it.
func checkPlainPasswords(t *testing.T, format string, data []byte, users []User) {
	var recs []map[string]any
	if format == "json" {
		if json.Unmarshal(data, &recs) != nil {
			t.Fatal("ReadUsers took JSON that does not decode")
		}
	} else {
		r := csv.NewReader(bytes.NewReader(data))
		r.FieldsPerRecord = -1
		rows, err := r.ReadAll()
		if err != nil {
			t.Fatalf("ReadUsers took CSV that does not read: %v", err)
		}
		for i := 1; i < len(rows); i++ {
			rec := map[string]any{}
			for j, k := range rows[0] {
				rec[strings.TrimSpace(k)] = rows[i][j]
			}
			recs = append(recs, rec)
		}
	}
	if len(recs) != len(users) {
		t.Fatalf("%d records, %d users", len(recs), len(users))
	}
	for i, rec := range recs {
		pw, _ := rec["password"].(string)
		if h, _ := rec["password_hash"].(string); h != "" || pw == "" {
			continue
		}
		if u := users[i]; !fuzzAlgo.Check(pw, u.PasswordHash, u.Salt) || len(u.Salt) != 32 {
			t.Fatalf("user %q given with password %q does not check: %+v", u.ID, pw, u)
		}
	}
}
