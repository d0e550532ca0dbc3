// echo is the smallest protogate guest in AssemblyScript: it sends every
// chunk of bytes it receives back to the connection it came from.
//
// Build (from the repository root): make sdk-guests-as, or
//
//	sdk/assemblyscript/build.sh guests/assemblyscript/echo.ts .bin/guests/echo-as.wasm
import { Conn, Handler, Status, register } from "../../sdk/assemblyscript/assembly";
export * from "../../sdk/assemblyscript/assembly/exports";

class Echo extends Handler {
  onReceivedBytes(conn: Conn, data: Uint8Array): Status {
    return conn.send(data);
  }
}

register(new Echo());
