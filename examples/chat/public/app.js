// The chat page's client: one WebSocket speaking ferrogate/realtime's protocol. No build step.
'use strict'
const $ = (id) => document.getElementById(id)
const log = $('log')
const input = $('input')
const modelSelect = $('model')
const bubbles = new Map() // messageId -> the assistant's bubble being streamed into
let socket
let streaming = false

function add(className, text) {
  const element = document.createElement('div')
  element.className = className
  element.textContent = text // never innerHTML: answers are untrusted text
  log.append(element)
  log.scrollTop = log.scrollHeight
  return element
}

function setStreaming(value) {
  streaming = value
  $('send').disabled = value || socket?.readyState !== WebSocket.OPEN
  $('cancel').disabled = !value
}

function connect() {
  const sessionId = localStorage.getItem('ferrogate-chat-session')
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws/chat${sessionId ? `?sessionId=${encodeURIComponent(sessionId)}` : ''}`
  socket = new WebSocket(url)
  socket.onopen = () => setStreaming(false)
  socket.onclose = () => {
    $('status').textContent = 'disconnected — retrying'
    $('send').disabled = true
    setTimeout(connect, 2000)
  }
  socket.onmessage = (event) => handle(JSON.parse(event.data))
}

function handle(message) {
  switch (message.type) {
    case 'connection_established':
      localStorage.setItem('ferrogate-chat-session', message.sessionId)
      $('status').textContent = 'connected'
      modelSelect.replaceChildren(...message.supportedModels.map((m) => new Option(m, m, false, m === message.model)))
      log.replaceChildren()
      for (const turn of message.history) add(`message ${turn.role}`, turn.content)
      setStreaming(false)
      break
    case 'ai_response_start': {
      const bubble = add('message assistant streaming', '')
      bubble.dataset.messageId = message.messageId
      bubbles.set(message.messageId, bubble)
      break
    }
    case 'ai_response_chunk':
      bubbles.get(message.messageId)?.append(message.chunk)
      log.scrollTop = log.scrollHeight
      break
    case 'ai_response_complete': {
      const bubble = bubbles.get(message.messageId)
      bubbles.delete(message.messageId)
      if (bubble) {
        bubble.textContent = message.fullResponse
        bubble.classList.remove('streaming')
        bubble.dataset.done = 'true'
      }
      add('meta', `${message.model} · ${message.usage.totalTokens} tokens · $${message.costUsd.toFixed(6)}`)
      setStreaming(false)
      break
    }
    case 'ai_response_error':
      bubbles.get(message.messageId)?.classList.remove('streaming')
      bubbles.delete(message.messageId)
      add('error', message.code === 'ABORTED' ? 'stopped' : `${message.code}: ${message.message}`)
      setStreaming(false)
      break
    case 'ai_typing':
      $('typing').textContent = message.isTyping ? 'assistant is typing…' : ''
      break
    case 'user_typing':
      $('typing').textContent = message.isTyping ? 'you are typing in another tab…' : ''
      break
    case 'model_changed':
      modelSelect.value = message.model
      add('meta', `model: ${message.model}`)
      break
    case 'history_cleared':
      log.replaceChildren()
      break
    case 'error':
      add('error', `${message.code}: ${message.message}`)
      break
  }
}

const send = (message) => socket?.readyState === WebSocket.OPEN && socket.send(JSON.stringify(message))

$('form').addEventListener('submit', (event) => {
  event.preventDefault()
  const content = input.value.trim()
  if (!content || streaming) return
  add('message user', content)
  send({ type: 'chat_message', content })
  send({ type: 'typing_stop' })
  input.value = ''
  setStreaming(true)
})
$('cancel').addEventListener('click', () => send({ type: 'cancel' }))
$('clear').addEventListener('click', () => send({ type: 'clear_history' }))
modelSelect.addEventListener('change', () => send({ type: 'change_model', model: modelSelect.value }))
let typingTimer
input.addEventListener('input', () => {
  if (!typingTimer) send({ type: 'typing_start' })
  clearTimeout(typingTimer)
  typingTimer = setTimeout(() => {
    typingTimer = undefined
    send({ type: 'typing_stop' })
  }, 1500)
})

connect()
