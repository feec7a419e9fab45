import { ChatView } from "@/components/ChatView";

// One prerendered page serves every conversation: the server answers /chat/<id> with it
// and the client reads the id from the URL (see DESIGN §9).
export function generateStaticParams() {
  return [{ id: "_" }];
}

export default function ChatPage() {
  return <ChatView />;
}
